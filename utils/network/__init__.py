"""The network: its weights, device, precision, runner and class names."""
