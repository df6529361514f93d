"""The control plane's HTTP face."""
