"""Dispatch to runner managers vidfarm *uses* (Esup-Runner or `vidfarm runner`), over HTTP.

Not to be confused with `vidfarm.runner_service`, the runner manager vidfarm *is*.
"""
