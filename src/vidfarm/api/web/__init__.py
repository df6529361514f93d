"""The web dashboard served by `vidfarm serve` at `/`: static pages over the HTTP API.

Plain HTML, CSS and JavaScript modules in `static/`; nothing is built at run time. hls.js is
the one third-party file, fetched at build time by `python -m vidfarm.api.web.assets`.
"""
