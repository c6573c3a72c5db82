"""Live demos: webcam, video or bag in, meshes on screen and in a live Foxglove 3D view."""
