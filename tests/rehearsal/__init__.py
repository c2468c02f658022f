"""Rehearsal: the project image run with podman, the way KFP's DockerRunner runs it."""
