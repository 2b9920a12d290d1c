"""The exception tree of the core package.

Every public function of :mod:`ehub` raises a subclass of :class:`HubError`;
vendor errors (SQLAlchemy, httpx, kafka-python) are translated at the boundary
with ``raise ... from exc``. Two markers decide what Airflow retries:

- :class:`Transient` — the same call may succeed later (network, 5xx, 429,
  a locked database). Tasks let these propagate so Airflow retries.
- :class:`Terminal` — retrying cannot help (bad configuration, a record the
  platform rejected). Tasks record them and move on, or fail fast.

Tree::

    HubError
    ├── ConfigError (Terminal)            bad or missing setting; names the setting
    │   ├── SpecError                     a source spec is invalid; lists file:line:col
    │   └── OfficeError                   ehub.offices: an office registration or grant
    │       └── OfficeNotFound            refused; ``field`` names the setting
    ├── RecordError (Terminal)            one record cannot be normalized; carries
    │                                     source, record key, field, reason code
    ├── IdentifierError (RecordError)     an identifier fails its check
    ├── RoutingError (RecordError)        ehub.routing: a record's division is missing
    │                                     or invalid, so it cannot be returned to an office
    ├── StoreError                        the hub store failed
    │   └── StoreUnavailable (Transient)  cannot connect; names the URL (no password)
    ├── SourceError                       a department source failed as a whole
    │   ├── SourceUnavailable (Transient) unreachable, 5xx, 429, timeouts
    │   └── SourceRejected (Terminal)     bad credentials, malformed or hostile
    │                                     file, bad spec: fix before re-running
    ├── DestinationError                  a platform call failed
    │   ├── DestinationUnavailable (Transient)
    │   └── DestinationRejected (Terminal)
    ├── BrokerUnavailable (Transient)     the Kafka-protocol broker cannot be reached
    ├── ServiceError                      an embedded dev service failed to start/stop
    ├── SealRegistryError (Terminal)      ehub.seals: carries a reason code
    │   ├── SealNotFound, InvalidSealTransition
    │   └── NoUsableSeal                  the license is held with the reason
    └── LicenseChangeError (Terminal)     ehub.licenses: a status change refused

The signing package has its own tree under ``signing.errors.SigningError``
(KeyAccessError, SealUnavailable (Transient), UnsealableDocument, VerificationError).
"""

from __future__ import annotations


class HubError(Exception):
    """Base of every error raised by ehub's core package."""


class Transient:
    """Marker: the operation may succeed if retried later."""


class Terminal:
    """Marker: retrying the same operation cannot succeed."""


class ConfigError(HubError, Terminal):
    """A setting is missing or invalid. The message names the setting."""


class SpecError(ConfigError):
    """A source spec (YAML) is invalid. ``problems`` lists ``(line, column, path,
    message)``; ``str()`` gives one ``file:line:col: path: message`` per line."""

    def __init__(self, file: str, problems: list[tuple[int, int, str, str]]) -> None:
        self.file = file
        self.problems = problems
        super().__init__(
            "\n".join(f"{file}:{ln}:{col}: {path}: {msg}" for ln, col, path, msg in problems)
        )


class RecordError(HubError, Terminal):
    """One record cannot be normalized or validated.

    Carries what a data engineer needs to act: the source, the record key,
    the field, a machine reason code, and bilingual messages.
    """

    def __init__(
        self,
        reason_code: str,
        field: str,
        message_en: str,
        message_zh: str = "",
        *,
        source: str = "",
        record_key: str = "",
        value: object = None,
    ) -> None:
        self.reason_code = reason_code
        self.field = field
        self.message_en = message_en
        self.message_zh = message_zh or message_en
        self.source = source
        self.record_key = record_key
        self.value = value
        super().__init__(reason_code, field, message_en)

    def __str__(self) -> str:
        # Built on demand: normalizers fill in source and record key after raising.
        where = f"{self.source}/{self.record_key}: " if self.source or self.record_key else ""
        return f"{where}{self.field}: [{self.reason_code}] {self.message_en}"


class IdentifierError(RecordError):
    """An identifier (USCC, citizen ID, organization code, license identifier,
    division code) fails its format or check-character rule."""


class StoreError(HubError):
    """The hub store failed."""


class StoreUnavailable(StoreError, Transient):
    """The hub store cannot be reached."""


class SourceError(HubError):
    """A department source failed as a whole; its watermark stays where it was."""


class SourceUnavailable(SourceError, Transient):
    """A department system cannot be reached (or answered 5xx / 429)."""


class SourceRejected(SourceError, Terminal):
    """A source cannot be read until someone acts: expired or wrong credentials,
    a malformed or hostile file, an invalid source spec. The message says what."""


class DestinationError(HubError):
    """A call to a platform failed."""


class DestinationUnavailable(DestinationError, Transient):
    """The platform cannot be reached or answered 5xx/429."""


class DestinationRejected(DestinationError, Terminal):
    """The platform refused the request as a whole (4xx other than 429)."""


class BrokerUnavailable(HubError, Transient):
    """The Kafka-protocol broker cannot be reached."""


class ServiceError(HubError):
    """An embedded development service failed to start or stop."""
