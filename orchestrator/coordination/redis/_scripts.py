"""The Lua scripts of the Redis coordination backend, loaded from the ``lua/`` files.

Every change of holders or waiters is one script, so each runs atomically inside Redis and
costs one round trip; acquires and drops are operations of one script (``ops.lua``), and a
call carries as many as the client has queued (:mod:`._hot`). Time is Redis's own (``TIME``,
in microseconds), never a client clock. Every script that touches holders or waiters first
purges expired holders and waiters and ends with a dispatch pass (one per call, however many
operations it carries), the same algorithm as
:meth:`orchestrator.coordination.memory.InProcessCoordinator._dispatch`: starving waiters
first (granted, or what they need is reserved), then the waiters of classes with free slots
merged in aged-key order, each granted if its whole need is free.

Keys, under the prefix ``{namespace}:`` (a hash tag: one cluster slot per namespace)::

    h         hash  holder -> JSON {g: grant id, t: granted_us, f: [fence per lock], c: class,
                    l: locks, p: process, lab: labels}, in this order (see below)
    x         zset  "h" + holder -> lease expiry, "w" + waiter -> heartbeat expiry (us)
    c:<cls>   zset  holder -> lease expiry (us): the class's counting semaphore
    l         hash  lock -> "<last fencing token>" while free, "<token> <holder>" while held
    w         hash  waiter -> JSON {g, pr: priority, e: enqueued_us, cr: age credit, c, l, p,
                    lab}
    q:<cls>   zset  waiter -> aged key (us): the class's queue
    qc        set   classes with waiters
    caps      hash  class -> cap (-1: unlimited), as last asked for; its keys are every
                    class that ever had a holder (snapshot's usage counts)
    safe      str   time (us) from which grants may be made (see ``grants_allowed``)
    in:<proc> list  grant notes for a process's waiters (its wake-up hint)
    s         hash  shared state: key -> "<version>:<writer nonce>:<JSON>"

Records are JSON written without decoding anything: the client sends the part it knows
(``{"c":..,"l":..,"p":..,"lab":..}``, the record fragment) and a script puts its own fields in
front, grant id first, so a release or renewal checks the grant id by comparing a prefix.
Script arguments are plain strings (``ARGV``), never JSON to decode, on the hot path:
acquire and release read about ten keys each and decode nothing, and a release that frees
nothing anyone waits for reads no clock and makes no dispatch pass.

The scripts are ``.lua`` files of this package (shipped as package data), read once with
:mod:`importlib.resources` as Dramatiq does, so they work from a wheel or a zip as well as
from a checkout. ``prelude.lua`` (the shared helpers: purge, dispatch, grant) is put in
front of each script but ``state_cas.lua``; ``OPS`` is the uncontended fast path of
``fast.lua``, then the prelude, the operations of ``acquire.lua`` and ``drop.lua`` and the
batch loop of ``ops.lua``. Redis caches each by its SHA-1.

Numbers pass to Redis as strings formatted with ``%.0f``: Lua's ``tostring`` and cjson keep
only 14 digits, too few for microsecond timestamps and fencing tokens.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["OPS", "RENEW", "SNAPSHOT", "STATE_CAS", "read_script"]


def read_script(name: str) -> str:
    """The text of ``lua/<name>.lua`` from the installed package (``FileNotFoundError``
    when it is missing: a broken install)."""
    return files(__package__ or __name__).joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")


_PRELUDE = read_script("prelude")

#: Acquires and drops: ``fast.lua`` runs an uncontended one; else ``acquire.lua`` and
#: ``drop.lua`` define them and ``ops.lua`` runs the batch, all inside a function that only
#: a call the fast path passes on runs (so only such a call defines the prelude's helpers).
OPS = (
    read_script("fast")
    + "local function full()\n"
    + _PRELUDE
    + read_script("acquire")
    + read_script("drop")
    + read_script("ops")
    + "end\nreturn full()\n"
)
RENEW = _PRELUDE + read_script("renew")
SNAPSHOT = _PRELUDE + read_script("snapshot")
STATE_CAS = read_script("state_cas")
