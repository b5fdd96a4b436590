from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ..auth import AuthFirstRoute, require_admin, require_read

router = APIRouter(tags=["aliases"], route_class=AuthFirstRoute)


class AliasPut(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    collection: str = Field(min_length=1, max_length=255, examples=["docs-v2"])


class AliasOut(BaseModel):
    alias: str
    collection: str


class AliasList(BaseModel):
    aliases: list[AliasOut]


@router.get("/aliases", response_model=AliasList, dependencies=[Depends(require_read)])
def list_aliases(request: Request):
    """Every alias and the collection it points at."""
    mapping = request.app.state.store.aliases.all()
    return {"aliases": [{"alias": a, "collection": c} for a, c in sorted(mapping.items())]}


@router.get("/aliases/{alias}", response_model=AliasOut, dependencies=[Depends(require_read)])
def get_alias(alias: str, request: Request):
    return {"alias": alias, "collection": request.app.state.store.aliases.get(alias)}


@router.put("/aliases/{alias}", response_model=AliasOut, dependencies=[Depends(require_admin)],
            responses={201: {"model": AliasOut, "description": "a new alias"}})
def put_alias(alias: str, body: AliasPut, request: Request, response: Response):
    """Point an alias at a collection, or switch it to another at once (zero-downtime
    reindex: build the new collection, then switch). Every route that takes a collection name
    takes an alias. 404 if the collection does not exist; 409 if the alias is a collection's
    name."""
    store = request.app.state.store
    if store.aliases.put(alias, body.collection, store.names()):
        response.status_code = 201
    return {"alias": alias, "collection": body.collection}


@router.delete("/aliases/{alias}", status_code=204, dependencies=[Depends(require_admin)])
def delete_alias(alias: str, request: Request):
    """Remove an alias (its collection stays)."""
    request.app.state.store.aliases.delete(alias)
    return Response(status_code=204)
