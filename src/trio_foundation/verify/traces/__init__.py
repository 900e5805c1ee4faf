"""Trace export: per-primitive mappings from the runtime's trace hook to TLA+ trace modules.

Each primitive with a trace spec (``specs/<Name>Trace.tla``) has one module
here that turns recorded :class:`~trio_foundation.runtime.driver.Transition`
s into the records its trace spec replays (:mod:`.lease_lock`, :mod:`.raft`). A new
primitive adds its mapping and its trace spec; the recording is the driver's.
"""
