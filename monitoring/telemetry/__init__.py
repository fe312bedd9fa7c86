"""GPU, engine and host telemetry: sampling, storage with downsampling, rules that act."""
