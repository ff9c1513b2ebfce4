"""AWS Lambda handlers (user provisioner, link preview). Import nothing from Synapse here."""
