"""The research protocol: scene generators and readers, metrics, the demo and the verdict experiment."""
