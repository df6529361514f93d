"""`vidfarm token`: API tokens are created here, shown once, and stored only as hashes."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from vidfarm.auth import Role, create_token, list_tokens, revoke_token
from vidfarm.cli.support import console, errors, guarded, runtime

token_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%MZ") if value is not None else "-"  # UTC


@token_app.command("create")
@guarded
def token_create(
    role: Annotated[Role, typer.Option(help="What the token may do.", case_sensitive=False)],
    name: Annotated[str | None, typer.Option(help="A note on who holds it.")] = None,
) -> None:
    """Create a token and print it, once: only its hash is stored."""
    with runtime() as rt, rt.sessions() as session:
        plaintext, token = create_token(session, role=role, name=name or role.value)
        token_id = token.id
    console.print(plaintext, markup=False, highlight=False, soft_wrap=True)
    errors.print(
        f"token {token_id} ({role.value}) created: store it now, it cannot be shown again",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@token_app.command("list")
@guarded
def token_list() -> None:
    """List tokens (never their secrets)."""
    with runtime() as rt, rt.sessions() as session:
        table = Table("id", "name", "role", "created", "last used", "revoked")
        for token in list_tokens(session):
            table.add_row(
                token.id,
                token.name,
                token.role,
                _when(token.created_at),
                _when(token.last_used_at),
                _when(token.revoked_at),
            )
        console.print(table)


@token_app.command("revoke")
@guarded
def token_revoke(token_id: Annotated[str, typer.Argument(help="Token id.")]) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    with runtime() as rt, rt.sessions() as session:
        token = revoke_token(session, token_id)
        console.print(f"token {token.id} revoked", highlight=False)
