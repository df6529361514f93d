"""`vidfarm runner`: a runner manager speaking the Esup-Runner protocol, for Esup-Pod.

Each task is a Video (its downloaded source) and a Job in this runner's own database, run by
the same worker core as every other transport. See docs/runner.md.

Not to be confused with `vidfarm.dispatch.runners`, the client side: managers vidfarm *uses*.
"""
