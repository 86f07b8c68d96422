"""From decoded frames to network input: windows, the pixels a resize reads, crops, preprocessing on the device."""
