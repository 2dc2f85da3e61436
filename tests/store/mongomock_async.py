"""A thin async facade over mongomock, for tests only.

It mimics the parts of PyMongo's async API (``AsyncDatabase``, ``AsyncCollection``,
``AsyncCursor``) that ``runtime.store.mongodb`` uses, so the adapter's code is the same
against a real server and against this facade. Every operation is an ``async def`` that
runs one synchronous mongomock step between two ``asyncio.sleep(0)``: concurrent tasks
interleave between operations the way they would between round trips, while each
operation itself is atomic (like a single-document write on the server).

Where mongomock differs from the server in a way the adapter relies on, the facade
implements the server's behaviour itself (each place says so):

- Unique indexes. mongomock compares a new document's whole field value, so it does
  not enforce a unique *multikey* index (``versions: [1, 2]`` vs ``[2, 3]`` pass, as do
  two commits sharing one ``events.event_id``), and ``create_indexes`` drops
  ``partialFilterExpression``. The facade keeps its own index catalogue and enforces
  unique / sparse / partial indexes with one key per array element, as the server does
  (a key repeated inside one document is allowed, as on the server), raising
  ``DuplicateKeyError`` with server-like details (``keyPattern``, ``keyValue``, an
  errmsg naming the index). Non-unique indexes are only catalogued.
- Equality between booleans and numbers. BSON keeps them apart (``{on: true}`` does not
  match ``1``); mongomock uses Python's ``True == 1``. The facade re-checks such
  equality conditions with the server's rule.
- Sorting on an array field. The server sorts ascending by the smallest element and
  descending by the largest; mongomock compares whole arrays. The facade sorts itself.
- Dates. A BSON date is a UTC instant with millisecond precision; the facade encodes
  datetimes so (mongomock would keep aware ones from ``$set`` and then fail to compare).
- Codec options. mongomock refuses ``tzinfo`` and ``uuid_representation``; the facade
  keeps the codec options and applies them to results: tz-aware datetimes, standard
  UUIDs decoded from binary subtype 4, binary subtype 0 returned as ``bytes``.
- ``insert_many(ordered=False)`` inserts what it can and raises ``BulkWriteError`` with
  the server's ``writeErrors`` shape.

mongomock has no indexes, so every query scans the collection; reads here filter the
stored documents with mongomock's own matcher (``filter_applies``) and project with its
projection code, without copying documents that do not match. Write and read concerns
are passed to mongomock, which records them but has nothing to honour them with.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from numbers import Number
from typing import Any

import bson
import mongomock
from bson import Binary, ObjectId
from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions
from mongomock.filtering import filter_applies
from pymongo import IndexModel, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from pymongo.read_concern import ReadConcern
from pymongo.results import DeleteResult, InsertManyResult, InsertOneResult, UpdateResult
from pymongo.write_concern import WriteConcern


async def _round_trip() -> None:
    """Let other tasks run, as awaiting a server would."""
    await asyncio.sleep(0)


# --------------------------------------------------------------------- indexes


@dataclass(frozen=True)
class _Index:
    name: str
    keys: tuple[tuple[str, Any], ...]
    unique: bool = False
    sparse: bool = False
    partial: Mapping[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        """What ``index_information`` reports for this index on a real server."""
        out: dict[str, Any] = {"v": 2, "key": list(self.keys)}
        if self.unique:
            out["unique"] = True
        if self.sparse:
            out["sparse"] = True
        if self.partial is not None:
            out["partialFilterExpression"] = dict(self.partial)
        return out

    def keys_of(self, doc: Mapping[str, Any]) -> set[tuple[Any, ...]]:
        """The keys ``doc`` has in this index (empty when the index leaves it out)."""
        if self.partial is not None and not filter_applies(dict(self.partial), doc):
            return set()
        per_field = []
        any_present = False
        for field, _direction in self.keys:
            keys, present = _path_keys(doc, field.split("."))
            any_present = any_present or present
            per_field.append(keys)
        if self.sparse and not any_present:
            return set()
        return set(itertools.product(*per_field))


def _freeze(value: Any) -> Any:
    """A hashable stand-in for an index key value (booleans apart from numbers)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, Mapping):
        return ("doc", tuple((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return ("array", tuple(_freeze(v) for v in value))
    if isinstance(value, Binary):
        return ("binary", value.subtype, bytes(value))
    if isinstance(value, uuid.UUID):
        return ("binary", 4, value.bytes)
    return value


def _path_keys(value: Any, parts: Sequence[str]) -> tuple[list[Any], bool]:
    """Index keys of one field path (one per array element), and whether it is present."""
    if not parts:
        if isinstance(value, list):
            if not value:
                return [("undefined",)], True  # the server indexes [] as undefined
            return [_freeze(v) for v in value], True
        return [_freeze(value)], True
    if isinstance(value, list):
        keys: list[Any] = []
        present = False
        for item in value:
            item_keys, item_present = _path_keys(item, parts)
            present = present or item_present
            keys.extend(item_keys)
        return (keys or [None]), present
    if isinstance(value, Mapping) and parts[0] in value:
        return _path_keys(value[parts[0]], parts[1:])
    return [None], False


def _index_from_model(model: IndexModel) -> _Index:
    document = model.document
    return _Index(
        name=document["name"],
        keys=tuple(document["key"].items()),
        unique=bool(document.get("unique", False)),
        sparse=bool(document.get("sparse", False)),
        partial=document.get("partialFilterExpression"),
    )


# ---------------------------------------------------------------------- codecs


def _encode(value: Any, codec: CodecOptions[Any]) -> Any:
    """The values a server would store. A BSON date is a UTC instant in milliseconds
    (mongomock keeps aware datetimes given to ``$set``, then cannot compare them with
    naive ones); a native UUID is binary subtype 4."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    if isinstance(value, uuid.UUID):  # bson.encode has refused it unless STANDARD
        return Binary.from_uuid(value)
    if isinstance(value, Mapping):
        return {k: _encode(v, codec) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v, codec) for v in value]
    return value


def _decode(value: Any, codec: CodecOptions[Any]) -> Any:
    """What PyMongo would return with these codec options."""
    if isinstance(value, datetime):
        if not codec.tz_aware:
            return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return aware.astimezone(codec.tzinfo or UTC)
    if isinstance(value, Binary):
        if value.subtype == 4 and codec.uuid_representation == UuidRepresentation.STANDARD:
            return value.as_uuid()
        if value.subtype == 0:
            return bytes(value)
        return value
    if isinstance(value, Mapping):
        return {k: _decode(v, codec) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, codec) for v in value]
    return value


# ------------------------------------------------------------ matching, sorting


def _path_values(value: Any, parts: Sequence[str]) -> list[Any]:
    """Every value a field path reaches, arrays expanded (and kept), as the server sees."""
    if not parts:
        return [*value, value] if isinstance(value, list) else [value]
    if isinstance(value, list):
        return [v for item in value for v in _path_values(item, parts)]
    if isinstance(value, Mapping) and parts[0] in value:
        return _path_values(value[parts[0]], parts[1:])
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, Number) and not isinstance(value, bool)


def _bson_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return bool(left == right)


def _strict_equalities_hold(query: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """Re-check ``{field: value}`` / ``{field: {"$eq": value}}`` conditions whose value is
    a boolean or a number with BSON's rule (mongomock lets ``True`` equal ``1``)."""
    for field, condition in query.items():
        if field == "$and":
            if not all(_strict_equalities_hold(q, doc) for q in condition):
                return False
            continue
        if field.startswith("$"):
            continue
        wanted = condition.get("$eq") if isinstance(condition, Mapping) else condition
        if isinstance(wanted, bool) or _is_number(wanted):
            values = _path_values(doc, field.split("."))
            if not any(_bson_equal(v, wanted) for v in values):
                return False
    return True


def _has_strict_terms(query: Mapping[str, Any]) -> bool:
    """Whether a query compares a field with a boolean or a number for equality."""
    for field, condition in query.items():
        if field == "$and":
            if any(_has_strict_terms(q) for q in condition):
                return True
        elif not field.startswith("$"):
            wanted = condition.get("$eq") if isinstance(condition, Mapping) else condition
            if isinstance(wanted, bool) or _is_number(wanted):
                return True
    return False


def _needs_field(condition: Any) -> bool:
    """Whether a condition can only match a document that has the field."""
    if condition is None:
        return False
    if isinstance(condition, Mapping):
        operators = set(condition)
        if not operators or not operators <= {"$in", "$elemMatch", "$gt", "$gte", "$lt", "$lte"}:
            return False
        return None not in (condition.get("$in") or ())
    return True


def _may_match(query: Mapping[str, Any], doc: Mapping[str, Any]) -> bool:
    """A cheap necessary condition (top-level fields present, plain strings equal) that
    spares mongomock's matcher the documents that cannot match."""
    for field, condition in query.items():
        if field.startswith("$"):
            continue
        top = field.split(".", 1)[0]
        if _needs_field(condition) and top not in doc:
            return False
        if "." not in field and isinstance(condition, str):
            value = doc[field]
            if isinstance(value, str) and value != condition:
                return False
    return True


_TYPE_ORDER: tuple[tuple[type, int], ...] = (
    (type(None), 1),
    (bool, 8),
    (Number, 2),
    (str, 3),
    (Mapping, 4),
    (list, 5),
    (bytes, 6),
    (datetime, 9),
)


def _rank(value: Any) -> int:
    for kind, rank in _TYPE_ORDER:
        if isinstance(value, kind):
            return rank
    return 7


def _sort_value(doc: Mapping[str, Any], field: str, descending: bool) -> tuple[int, Any]:
    """The server's sort key: an array sorts by its smallest element ascending and its
    largest descending; a missing field sorts like null."""
    values = [v for v in _path_values(doc, field.split(".")) if not isinstance(v, list)]
    ranked = [(_rank(v), v) for v in values or [None]]
    return max(ranked) if descending else min(ranked)


def _normalise_sort(key_or_list: Any, direction: Any = None) -> list[tuple[str, int]]:
    if isinstance(key_or_list, str):
        return [(key_or_list, 1 if direction is None else int(direction))]
    return [(k, int(d)) for k, d in key_or_list]


def _sorted(docs: list[dict[str, Any]], sort: list[tuple[str, int]]) -> list[dict[str, Any]]:
    for field, direction in reversed(sort):
        descending = direction < 0
        docs.sort(key=lambda d, f=field, r=descending: _sort_value(d, f, r), reverse=descending)
    return docs


# ------------------------------------------------------------------- the facade


class AsyncMockCursor:
    """Like ``pymongo.asynchronous.cursor.AsyncCursor``: chain ``sort``/``skip``/``limit``,
    then ``await to_list(...)`` or ``async for``."""

    def __init__(
        self,
        collection: AsyncMockCollection,
        filter: Mapping[str, Any] | None,
        projection: Any,
        sort: Any = None,
        skip: int = 0,
        limit: int = 0,
    ) -> None:
        self._collection = collection
        self._filter = dict(filter or {})
        self._projection = projection
        self._sort: list[tuple[str, int]] = _normalise_sort(sort) if sort else []
        self._skip = skip
        self._limit = limit
        self._results: Iterator[dict[str, Any]] | None = None

    def sort(self, key_or_list: Any, direction: Any = None) -> AsyncMockCursor:
        self._sort = _normalise_sort(key_or_list, direction)
        return self

    def skip(self, skip: int) -> AsyncMockCursor:
        self._skip = skip
        return self

    def limit(self, limit: int) -> AsyncMockCursor:
        self._limit = limit
        return self

    async def _run(self) -> Iterator[dict[str, Any]]:
        if self._results is None:
            await _round_trip()
            docs = self._collection._select(self._filter, self._projection, self._sort, self._skip, self._limit)
            self._results = iter(docs)
        return self._results

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        results = await self._run()
        out = list(results) if length is None else list(itertools.islice(results, length))
        await _round_trip()
        return out

    def __aiter__(self) -> AsyncMockCursor:
        return self

    async def __anext__(self) -> dict[str, Any]:
        results = await self._run()
        try:
            return next(results)
        except StopIteration:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        self._results = iter(())


class AsyncMockCollection:
    """Like ``pymongo.asynchronous.collection.AsyncCollection`` for the calls Baton uses."""

    def __init__(
        self,
        database: AsyncMockDatabase,
        sync: mongomock.Collection,
        codec_options: CodecOptions[Any],
    ) -> None:
        self._database = database
        self._sync = sync
        self._codec = codec_options

    # ---------------------------------------------------------------- options

    @property
    def name(self) -> str:
        return str(self._sync.name)

    @property
    def full_name(self) -> str:
        return f"{self._database.name}.{self.name}"

    @property
    def database(self) -> AsyncMockDatabase:
        return self._database

    @property
    def codec_options(self) -> CodecOptions[Any]:
        return self._codec

    @property
    def write_concern(self) -> WriteConcern:
        return self._sync.write_concern  # type: ignore[no-any-return]

    @property
    def read_concern(self) -> ReadConcern:
        return self._sync.read_concern  # type: ignore[no-any-return]

    @property
    def read_preference(self) -> Any:
        return self._sync.read_preference

    def with_options(
        self,
        codec_options: CodecOptions[Any] | None = None,
        read_preference: Any = None,
        write_concern: WriteConcern | None = None,
        read_concern: ReadConcern | None = None,
    ) -> AsyncMockCollection:
        # Codec options stay here: mongomock rejects tzinfo and uuid_representation.
        sync = self._sync.with_options(
            read_preference=read_preference,
            write_concern=write_concern,
            read_concern=read_concern,
        )
        return AsyncMockCollection(self._database, sync, codec_options or self._codec)

    # -------------------------------------------------------- stored documents

    def _to_server(self, value: Mapping[str, Any]) -> Any:
        """Encode with PyMongo's BSON encoder first (so what the real driver would refuse
        is refused here too), then hand mongomock the values a server would store."""
        bson.encode(value, codec_options=self._codec)
        return _encode(value, self._codec)

    def _documents(self) -> list[dict[str, Any]]:
        """The stored documents themselves (not copies): read them, never change them."""
        return list(self._sync._store.documents)

    def _matching(self, filter: Mapping[str, Any]) -> list[dict[str, Any]]:
        query = self._to_server(filter)
        return [
            doc
            for doc in self._documents()
            if _may_match(query, doc) and filter_applies(query, doc) and _strict_equalities_hold(query, doc)
        ]

    def _narrowed(self, filter: Mapping[str, Any]) -> dict[str, Any]:
        """The filter for a mongomock write: by _id when BSON's equality rule matters."""
        query = self._to_server(filter)
        if not _has_strict_terms(query):
            return query
        return {"_id": {"$in": [doc["_id"] for doc in self._matching(filter)]}}

    # ---------------------------------------------------------------- indexes

    @property
    def _indexes(self) -> dict[str, _Index]:
        return self._database._catalogue.setdefault(self.name, {})

    def _key_map(self, index: _Index) -> dict[tuple[Any, ...], set[Any]]:
        """Index key -> ids of the documents holding it (rebuilt after updates/deletes)."""
        maps = self._database._key_maps.setdefault(self.name, {})
        if index.name not in maps:
            key_map: dict[tuple[Any, ...], set[Any]] = {}
            for doc in self._documents():
                for key in index.keys_of(doc):
                    key_map.setdefault(key, set()).add(doc["_id"])
            maps[index.name] = key_map
        return maps[index.name]

    def _forget_keys(self) -> None:
        self._database._key_maps.pop(self.name, None)

    def _add_index(self, index: _Index) -> str:
        existing = self._indexes.get(index.name)
        if existing is not None:
            if existing != index:
                raise OperationFailure(
                    f"An existing index has the same name as the requested index: {index.name}",
                    85,
                )
            return index.name
        if index.unique:
            for ids in self._key_map(index).values():
                if len(ids) > 1:
                    self._forget_keys()
                    raise DuplicateKeyError(f"E11000 duplicate key error index: {index.name}", 11000)
        self._indexes[index.name] = index
        return index.name

    async def create_indexes(self, indexes: Sequence[IndexModel], **_: Any) -> list[str]:
        await _round_trip()
        return [self._add_index(_index_from_model(model)) for model in indexes]

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        await _round_trip()
        key_list = _normalise_sort(keys)
        return self._add_index(
            _Index(
                name=kwargs.get("name") or "_".join(f"{k}_{d}" for k, d in key_list),
                keys=tuple(key_list),
                unique=bool(kwargs.get("unique", False)),
                sparse=bool(kwargs.get("sparse", False)),
                partial=kwargs.get("partialFilterExpression"),
            )
        )

    async def index_information(self) -> dict[str, Any]:
        await _round_trip()
        info: dict[str, Any] = {"_id_": {"v": 2, "key": [("_id", 1)]}}
        for name, index in self._indexes.items():
            info[name] = index.info()
        return info

    def _check_unique(self, doc: Mapping[str, Any]) -> None:
        """Raise like the server if ``doc`` would share a unique index key with another
        document (``doc`` itself may already be stored under its ``_id``)."""
        for index in self._indexes.values():
            if not index.unique:
                continue
            key_map = self._key_map(index)
            for key in index.keys_of(doc):
                if key_map.get(key, set()) - {doc["_id"]}:
                    fields = [field for field, _ in index.keys]
                    value = dict(zip(fields, key, strict=True))
                    errmsg = (
                        f"E11000 duplicate key error collection: {self.full_name} index: {index.name} dup key: {value}"
                    )
                    details = {
                        "index": 0,
                        "code": 11000,
                        "errmsg": errmsg,
                        "keyPattern": dict(index.keys),
                        "keyValue": value,
                    }
                    raise DuplicateKeyError(errmsg, 11000, details)

    def _remember_keys(self, doc: Mapping[str, Any]) -> None:
        for index in self._indexes.values():
            if index.unique:
                key_map = self._key_map(index)
                for key in index.keys_of(doc):
                    key_map.setdefault(key, set()).add(doc["_id"])

    # ----------------------------------------------------------------- writes

    def _insert(self, document: dict[str, Any]) -> Any:
        doc = self._to_server(document)
        doc.setdefault("_id", ObjectId())
        self._check_unique(doc)
        self._sync.insert_one(doc)
        self._remember_keys(doc)
        document["_id"] = doc["_id"]  # PyMongo sets _id on the caller's document too
        return doc["_id"]

    async def insert_one(self, document: dict[str, Any], **_: Any) -> InsertOneResult:
        await _round_trip()
        inserted = self._insert(document)
        await _round_trip()
        return InsertOneResult(inserted, acknowledged=True)

    async def insert_many(
        self, documents: Iterable[dict[str, Any]], ordered: bool = True, **_: Any
    ) -> InsertManyResult:
        await _round_trip()
        ids: list[Any] = []
        errors: list[dict[str, Any]] = []
        for i, document in enumerate(documents):
            try:
                ids.append(self._insert(document))
            except DuplicateKeyError as exc:
                errors.append({**(exc.details or {}), "index": i, "op": document})
                if ordered:
                    break
        await _round_trip()
        if errors:
            raise BulkWriteError(
                {
                    "writeErrors": errors,
                    "writeConcernErrors": [],
                    "nInserted": len(ids),
                    "nUpserted": 0,
                    "nMatched": 0,
                    "nModified": 0,
                    "nRemoved": 0,
                    "upserted": [],
                }
            )
        return InsertManyResult(ids, acknowledged=True)

    def _update(self, filter: Mapping[str, Any], update: Mapping[str, Any], upsert: bool, many: bool) -> UpdateResult:
        query = self._to_server(filter) if upsert else self._narrowed(filter)
        method = self._sync.update_many if many else self._sync.update_one
        result = method(query, self._to_server(update), upsert=upsert)
        self._forget_keys()
        if result.upserted_id is not None:
            # The server checks unique indexes on an upserted document; mongomock does
            # not reliably: check, and undo the insert if it clashes.
            try:
                self._check_unique(self._sync._store[result.upserted_id])
            except DuplicateKeyError:
                self._sync.delete_one({"_id": result.upserted_id})
                self._forget_keys()
                raise
        return UpdateResult(result.raw_result, acknowledged=True)

    async def update_one(
        self, filter: Mapping[str, Any], update: Mapping[str, Any], upsert: bool = False, **_: Any
    ) -> UpdateResult:
        await _round_trip()
        result = self._update(filter, update, upsert, many=False)
        await _round_trip()
        return result

    async def update_many(
        self, filter: Mapping[str, Any], update: Mapping[str, Any], upsert: bool = False, **_: Any
    ) -> UpdateResult:
        await _round_trip()
        result = self._update(filter, update, upsert, many=True)
        await _round_trip()
        return result

    async def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        projection: Any = None,
        sort: Any = None,
        upsert: bool = False,
        return_document: bool = ReturnDocument.BEFORE,
        **_: Any,
    ) -> dict[str, Any] | None:
        await _round_trip()
        found = self._sync.find_one_and_update(
            self._to_server(filter) if upsert else self._narrowed(filter),
            self._to_server(update),
            projection=projection,
            sort=_normalise_sort(sort) if sort else None,
            upsert=upsert,
            return_document=return_document,
        )
        self._forget_keys()
        await _round_trip()
        return None if found is None else _decode(found, self._codec)

    async def delete_one(self, filter: Mapping[str, Any], **_: Any) -> DeleteResult:
        await _round_trip()
        result = self._sync.delete_one(self._narrowed(filter))
        self._forget_keys()
        await _round_trip()
        return DeleteResult(result.raw_result, acknowledged=True)

    async def delete_many(self, filter: Mapping[str, Any], **_: Any) -> DeleteResult:
        await _round_trip()
        result = self._sync.delete_many(self._narrowed(filter))
        self._forget_keys()
        await _round_trip()
        return DeleteResult(result.raw_result, acknowledged=True)

    async def drop(self, **_: Any) -> None:
        await _round_trip()
        self._sync.drop()
        self._database._catalogue.pop(self.name, None)
        self._forget_keys()

    # ------------------------------------------------------------------ reads

    def _select(
        self,
        filter: Mapping[str, Any],
        projection: Any,
        sort: list[tuple[str, int]],
        skip: int,
        limit: int,
    ) -> list[dict[str, Any]]:
        docs = self._matching(filter)
        if sort:
            docs = _sorted(docs, sort)
        docs = docs[skip:]
        if limit:
            docs = docs[:limit]
        # mongomock's projection code; it copies, so callers never share stored documents.
        spec = None if projection is None else dict(projection)
        return [
            _decode(self._sync._copy_only_fields(doc, None if spec is None else dict(spec), dict),
                    self._codec)
            for doc in docs
        ]  # fmt: skip

    def find(self, filter: Mapping[str, Any] | None = None, projection: Any = None, **kwargs: Any) -> AsyncMockCursor:
        return AsyncMockCursor(
            self,
            filter,
            projection,
            sort=kwargs.get("sort"),
            skip=kwargs.get("skip", 0),
            limit=kwargs.get("limit", 0),
        )

    async def find_one(
        self, filter: Mapping[str, Any] | None = None, *args: Any, **kwargs: Any
    ) -> dict[str, Any] | None:
        found = await self.find(filter, *args, **kwargs).limit(1).to_list(None)
        return found[0] if found else None

    async def count_documents(self, filter: Mapping[str, Any], **_: Any) -> int:
        await _round_trip()
        return len(self._matching(filter))


class AsyncMockDatabase:
    """Like ``pymongo.asynchronous.database.AsyncDatabase``, over one mongomock database.

    Holds the index catalogue the facade enforces: share one object between all the
    stores of a test (``get_collection`` and ``with_options`` share it too).
    """

    def __init__(
        self,
        sync: mongomock.Database,
        codec_options: CodecOptions[Any] | None = None,
        _shared: AsyncMockDatabase | None = None,
    ) -> None:
        self._sync = sync
        self._codec: CodecOptions[Any] = codec_options or CodecOptions()
        self._catalogue: dict[str, dict[str, _Index]] = _shared._catalogue if _shared else {}
        self._key_maps: dict[str, dict[str, dict[tuple[Any, ...], set[Any]]]] = _shared._key_maps if _shared else {}

    @classmethod
    def fresh(cls, name: str = "baton") -> AsyncMockDatabase:
        """A database on a new, empty in-memory mongomock client."""
        return cls(mongomock.MongoClient()[name])

    @property
    def name(self) -> str:
        return str(self._sync.name)

    @property
    def codec_options(self) -> CodecOptions[Any]:
        return self._codec

    def with_options(self, codec_options: CodecOptions[Any] | None = None, **kwargs: Any) -> AsyncMockDatabase:
        sync = self._sync.with_options(**kwargs) if kwargs else self._sync
        return AsyncMockDatabase(sync, codec_options or self._codec, _shared=self)

    def get_collection(
        self,
        name: str,
        codec_options: CodecOptions[Any] | None = None,
        read_preference: Any = None,
        write_concern: WriteConcern | None = None,
        read_concern: ReadConcern | None = None,
    ) -> AsyncMockCollection:
        collection = AsyncMockCollection(self, self._sync.get_collection(name), self._codec)
        return collection.with_options(
            codec_options=codec_options,
            read_preference=read_preference,
            write_concern=write_concern,
            read_concern=read_concern,
        )

    def __getitem__(self, name: str) -> AsyncMockCollection:
        return self.get_collection(name)

    async def command(self, command: str | Mapping[str, Any], **kwargs: Any) -> dict[str, Any]:
        await _round_trip()
        return dict(self._sync.command(command, **kwargs))

    async def list_collection_names(self, **_: Any) -> list[str]:
        await _round_trip()
        return list(self._sync.list_collection_names())

    async def drop_collection(self, name: str, **_: Any) -> None:
        await _round_trip()
        self._sync.drop_collection(name)
        self._catalogue.pop(name, None)
        self._key_maps.pop(name, None)
