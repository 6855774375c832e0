"""Containers: services that run as images in a Docker or Podman engine (docs/containers.md)."""
