"""Keeping secrets out of logs, events, errors, context packages and the run store.

The one place that says what is secret and how it is hidden; every part that prints, logs,
stores or packages text uses it:

- what is secret (:mod:`._names`): :func:`is_secret_name` for keys, variables, flags and
  query keys (:func:`is_secret_query_key`, :func:`is_secret_flag`); :func:`is_reference`
  for ``${VAR}``, which is kept;
- secrets in URLs and DSNs (:mod:`._urls`): :func:`redact_url` (the form that may be shown),
  :func:`url_secrets` (the values to scrub), :func:`url_password`,
  :func:`without_credentials`;
- masking by value (:mod:`._values`): the values known for a run (:func:`env_secrets`,
  :func:`param_secrets`, :func:`argv_secrets`) are replaced wherever they appear
  (:func:`scrub`, a run's :class:`Redactor`, the process-wide :func:`scrub_known`);
- masking by name (:mod:`._text`): :func:`mask_text`, :func:`mask_command` and
  :func:`mask_secrets` hide values by the name, flag or URL part they stand in, before a
  value is known; :func:`strip_controls` makes a step's output safe to quote.

Secrets are replaced by :data:`MASK` (``***``); values shorter than :data:`MIN_SECRET`
characters are never masked by value.

Like all of ``foundation``, it must not import anything of the project.
"""

from foundation.secrets._names import (
    MASK,
    MIN_SECRET,
    is_reference,
    is_secret_flag,
    is_secret_name,
    is_secret_query_key,
)
from foundation.secrets._text import mask_command, mask_secrets, mask_text, strip_controls
from foundation.secrets._urls import redact_url, url_password, url_secrets, without_credentials
from foundation.secrets._values import (
    Redactor,
    argv_secrets,
    env_secrets,
    known_secrets,
    param_secrets,
    remember_secrets,
    scrub,
    scrub_known,
)

__all__ = [
    "MASK",
    "MIN_SECRET",
    "Redactor",
    "argv_secrets",
    "env_secrets",
    "is_reference",
    "is_secret_flag",
    "is_secret_name",
    "is_secret_query_key",
    "known_secrets",
    "mask_command",
    "mask_secrets",
    "mask_text",
    "param_secrets",
    "redact_url",
    "remember_secrets",
    "scrub",
    "scrub_known",
    "strip_controls",
    "url_password",
    "url_secrets",
    "without_credentials",
]
