"""Scene generators and readers: synthetic scenes, Kalantari's layout, real-content brackets."""
