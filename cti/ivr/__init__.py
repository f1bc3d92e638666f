"""IVR over FastAGI: the AGI protocol session and the FastAGI server (flows
come on top of them)."""
