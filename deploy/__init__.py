"""The configs `vigil demo` runs on and the deployment files, shipped as package data."""
