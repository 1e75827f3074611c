"""The shared base every other package may import: errors, secrets, time.

Owns the one exception tree (:mod:`foundation.errors`), the one definition of what is secret
and how it is masked (:mod:`foundation.secrets`, a small sub-package) and the project's timestamps
(:mod:`foundation.clock`).

Must not import anything of the project (``orchestrator``, ``agents``, ``context_packages``,
``streams``): it is the bottom layer of the import order that ``import-linter`` enforces.
"""
