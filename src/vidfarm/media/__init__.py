"""Media work: probing, ladder planning, running ffmpeg, packaging HLS and artwork."""
