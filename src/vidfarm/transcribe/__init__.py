"""Speech to captions: streamed 16 kHz PCM from ffmpeg, pluggable engines, WebVTT/SRT/JSON."""
