"""Operations: admin actions, the deployment doctor (pure cores and blocking clients)."""
