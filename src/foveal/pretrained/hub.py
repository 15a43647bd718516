"""Hugging Face hub ids (`hf-hub:timm/NAME` or `hf-hub:timm/NAME@REVISION`): their config.json and weights,
from the hub's cache or downloaded into it, through huggingface_hub (an optional dependency).

Offline (HF_HUB_OFFLINE set, now or when huggingface_hub was imported) only the cache is read. A miss says in
one line what to fetch and where it would be looked for.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from foveal.errors import ConfigError, ModelFileError

HUB_PREFIX = "hf-hub:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # timm's names on the hub, preferred first
NEEDS_HUB = "reading {reference} needs huggingface_hub: pip install 'foveal[timm]'"


def is_hub_reference(reference: object) -> bool:
    """Whether `reference` names a hub repository: "hf-hub:owner/name"."""
    return str(reference).startswith(HUB_PREFIX)


def split_reference(reference: str) -> tuple[str, str | None]:
    """ "hf-hub:timm/x@rev" -> ("timm/x", "rev"); the revision is None when not given.

    Raises:
        ConfigError: not "hf-hub:owner/name".
    """
    repo_id, _, revision = reference[len(HUB_PREFIX) :].partition("@")
    owner, _, name = repo_id.partition("/")
    if not owner or not name or "/" in name:
        raise ConfigError(
            f"{reference} is not a hub id; expected hf-hub:OWNER/NAME, "
            "e.g. hf-hub:timm/deit_tiny_patch16_224.fb_in1k"
        )
    return repo_id, revision or None


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloads, read from the environment now: HF_HUB_CACHE, else
    HF_HOME/hub, else huggingface_hub's own default (~/.cache/huggingface/hub)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(_hub(HUB_PREFIX).constants.HF_HUB_CACHE)


def is_offline() -> bool:
    """HF_HUB_OFFLINE as the environment says now, or as huggingface_hub read it at import."""
    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return value in {"1", "ON", "YES", "TRUE"} or bool(_hub(HUB_PREFIX).constants.HF_HUB_OFFLINE)


def hub_files(reference: str) -> tuple[Path, Path]:
    """The config.json and the weights file (model.safetensors, else pytorch_model.bin) of hub id
    `reference`, from the cache, or downloaded into it when online.

    Raises:
        ModelFileError: not cached and not downloadable now (offline, no network, no such repository),
            in one line saying what to fetch.
        ConfigError: huggingface_hub is not installed, or `reference` is malformed.
    """
    _hub(reference)
    # Imported here, before quiet_hub_log: huggingface_hub sets up its log on this first (lazy) import.
    from huggingface_hub import errors, hf_hub_download

    repo_id, revision = split_reference(reference)
    cache, offline = hub_cache(), is_offline()

    def fetch(filename: str) -> Path:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            library_name="foveal",
        )
        return Path(path)

    missing_file = (errors.EntryNotFoundError, errors.LocalEntryNotFoundError)
    try:
        with quiet_hub_log():  # its retries say nothing the one line of a miss does not
            config = fetch("config.json")
            try:
                weights = fetch(WEIGHT_FILES[0])
            except missing_file:
                weights = fetch(WEIGHT_FILES[1])
    except (
        errors.LocalEntryNotFoundError,
        errors.EntryNotFoundError,
        errors.RepositoryNotFoundError,
        errors.RevisionNotFoundError,
        errors.HfHubHTTPError,
        errors.HFValidationError,
        OSError,  # a refused or lost connection, as requests raises it
    ) as error:
        raise ModelFileError(miss_message(reference, repo_id, cache, offline, error)) from None
    return config, weights


def miss_message(reference: str, repo_id: str, cache: Path, offline: bool, error: Exception) -> str:
    """One line: why `reference` cannot be read now, and how to get it."""
    from huggingface_hub import errors

    fetch = (
        f"fetch it once with: hf download {repo_id} (or: huggingface-cli download {repo_id}) on a machine "
        f"with internet and copy {cache / ('models--' + repo_id.replace('/', '--'))} into this cache, or "
        "pass a folder holding its config.json and model.safetensors"
    )
    if isinstance(error, errors.RepositoryNotFoundError):
        return (
            f"{reference}: the Hugging Face hub has no public repository {repo_id} (a typo, or a private or "
            f"gated one: log in with `hf auth login`); or {fetch}."
        )
    if isinstance(error, (errors.LocalEntryNotFoundError, OSError)) or offline:
        why = "offline: HF_HUB_OFFLINE is set" if offline else "no connection to the hub"
        return (
            f"{reference} is not in the Hugging Face cache ({cache}) and cannot be downloaded now "
            f"({why}); {fetch}."
        )
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{reference} could not be read from the Hugging Face hub ({first}); {fetch}."


@contextmanager
def quiet_hub_log() -> Iterator[None]:
    """huggingface_hub's log at ERROR and above only, for the time of the block (its retry warnings)."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _hub(reference: str) -> ModuleType:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # noqa: F401  (constants, as an attribute of the module)
    except ImportError:
        raise ConfigError(NEEDS_HUB.format(reference=reference)) from None
    return huggingface_hub
