"""``triage serve``, ``triage keys ...``, ``triage export`` and ``triage reencode``: the
service's commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import func, select
from tqdm import tqdm

from model.inference import ModelLoadError
from model.labels import LabelSchema
from serving.cases import reencode_vectors
from serving.keys import ROLES, create_key, list_keys, revoke_key
from serving.letters import export_records
from serving.settings import ServiceSettings
from serving.store import Letter, Store, StoreError

keys_app = typer.Typer(help="API keys (stored hashed; a key is shown once, when made).",
                       no_args_is_help=True)
StoreOption = Annotated[str | None, typer.Option("--store", help="store URL (default: TRIAGE_STORE_URL)")]


def _store(url: str | None) -> Store:
    settings = ServiceSettings()
    try:
        from serving.app import open_store

        return open_store(settings.model_copy(update={"store_url": url} if url else {}))
    except StoreError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def serve(host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port")] = 8000) -> None:
    """Start the service (settings from TRIAGE_* variables: store, model, limits)."""
    import uvicorn

    from serving.app import create_app

    logging.getLogger("serving.access").setLevel(logging.INFO)
    uvicorn.run(create_app(ServiceSettings()), host=host, port=port, log_level="info",
                access_log=False)  # our access log carries ids only, never bodies or queries


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Option(help="who holds the key, e.g. 纪委信访室-张三")],
                role: Annotated[str, typer.Option(help=f"one of {', '.join(ROLES)}")],
                store: StoreOption = None) -> None:
    """Make a key and print it (once: only its hash is stored)."""
    if role not in ROLES:
        typer.echo(f"error: --role must be one of {', '.join(ROLES)}, found {role!r}", err=True)
        raise typer.Exit(2)
    opened = _store(store)
    with opened.session() as session:
        row, key = create_key(session, name, role)  # type: ignore[arg-type]
        typer.echo(f"key {row.id} ({role}) for {name}: {key}")


@keys_app.command("list")
def keys_list(store: StoreOption = None) -> None:
    """Every key: id, role, name, created, revoked."""
    with _store(store).session() as session:
        for row in list_keys(session):
            revoked = f" revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else ""
            typer.echo(f"{row.id}\t{row.role}\t{row.name}\t{row.created_at:%Y-%m-%d}{revoked}")


@keys_app.command("revoke")
def keys_revoke(key_id: int, store: StoreOption = None) -> None:
    """Revoke a key at once (its row stays for the audit trail)."""
    with _store(store).session() as session:
        if revoke_key(session, key_id) is None:
            typer.echo(f"error: no key {key_id}", err=True)
            raise typer.Exit(2)
    typer.echo(f"key {key_id} revoked")


def export(out: Annotated[Path, typer.Option(help="JSONL file to write")],
           labels: Annotated[Path, typer.Option(help="labels file of the stored letters")],
           store: StoreOption = None) -> None:
    """Write reviewed letters as training JSONL in the corpus format."""
    schema = LabelSchema.from_yaml(labels)
    count = write_export(_store(store), schema, out)
    typer.echo(f"{count} reviewed letters written to {out}")


def write_export(store: Store, schema: LabelSchema, out: Path) -> int:
    """Write the store's reviewed letters to ``out``; returns how many."""
    count = 0
    with store.session() as session, out.open("w", encoding="utf-8") as handle:
        for record in export_records(session, schema):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def reencode(
    model: Annotated[Path, typer.Option(help="model directory whose vectors the service will read")],
    store: StoreOption = None,
    batch_size: Annotated[int, typer.Option(min=1, help="letters per committed batch")] = 64,
) -> None:
    """Rewrite every stored letter's linking vector with MODEL (its matter encoder, on the
    runtime of TRIAGE_RUNTIME), after 'triage fit-linker' trained a new one, and record
    which encoder made them. Restart the service afterwards: it rebuilds its index from the
    store."""
    from serving.engine import Engine

    try:
        engine = Engine.load(model, runtime=ServiceSettings().runtime)
    except ModelLoadError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    target = _store(store)
    with target.session() as session:
        total = session.scalar(select(func.count()).select_from(Letter)) or 0
    with tqdm(total=total, desc="letters", unit="letter") as bar:
        count = reencode_vectors(target, engine.vectors, engine.vector_space, engine.classifier.schema,
                                 batch_size, bar.update)
    typer.echo(f"{count} stored letters re-encoded with {engine.version} ({engine.vector_space})")


__all__ = ["export", "keys_app", "reencode", "serve", "write_export"]
