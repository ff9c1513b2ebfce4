"""Operations: running and provisioning the stack outside Synapse (dev stack, emulators)."""
