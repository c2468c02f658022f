"""Customer features for the predictor: the Feast online store read through the feature
service, and the 503 a lookup that cannot answer in time becomes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from starlette.exceptions import HTTPException

from mlstack.config import Settings
from mlstack.features import store as feature_store
from mlstack.features.definitions import ENTITY


class LookupUnavailable(HTTPException):
    """The online store did not answer a lookup within `serving.lookup_timeout_seconds`, or
    failed: a 503 with Retry-After. Requests with full feature rows are still scored."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, detail, headers={"Retry-After": "1"})


class CustomerLookup:
    """Online features of customers through the feature service (Feast).

    When the service is one feature view keyed by the customer id (as the repo declares it),
    the rows are read with the Feast provider's `online_read` for that view, the call
    `get_online_features` makes underneath, without building its generic response (about
    4x less time per lookup); otherwise `get_online_features` is called.

    Where the online store reads natively in asyncio (Feast's Redis store, the cluster's),
    `asynchronous` is true and `fetch_async` reads in the event loop: no thread hand-off,
    and a caller's timeout cancels the read. Other stores are read with the blocking
    `fetch`: in the event loop for the local SQLite file (`local`: a read of a local file
    takes about 0.1 ms, less than handing it to a thread), in a thread for the rest, whose
    far side may be slow.
    """

    def __init__(self, settings: Settings, features: tuple[str, ...]) -> None:
        from feast.infra.online_stores.online_store import OnlineStore
        from feast.infra.online_stores.sqlite import SqliteOnlineStore
        from feast.infra.provider import get_provider

        budget = settings.serving.lookup_timeout_seconds
        self.store = feature_store.open_store(settings, redis_timeout=budget)
        self.service = self.store.get_feature_service(settings.feast.feature_service)
        self.features = features
        self.asynchronous = False
        self.local = False
        self._view = None
        projections = self.service.feature_view_projections
        if len(projections) == 1:
            view = self.store.get_feature_view(projections[0].name)
            served = {f.name for f in projections[0].features}
            if set(features) <= served and [c.name for c in view.entity_columns] == [ENTITY]:
                self._view = view
                self._provider = get_provider(self.store.config)
                online = type(self._provider.online_store)
                self.asynchronous = online.online_read_async is not OnlineStore.online_read_async
                self.local = issubclass(online, SqliteOnlineStore)

    def fetch(self, customer_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The feature rows (float64, NaN if missing) and whether each customer was found."""
        if self._view is not None:
            rows = self._provider.online_read(
                config=self.store.config,
                table=self._view,
                entity_keys=self._keys(customer_ids),
                requested_features=list(self.features),
            )
            return self._matrix(rows)
        response = self.store.get_online_features(
            features=self.service, entity_rows={ENTITY: customer_ids}
        )
        values = response.to_dict()
        matrix = np.empty((len(customer_ids), len(self.features)), dtype=np.float64)
        found = np.zeros(len(customer_ids), dtype=bool)
        for j, name in enumerate(self.features):
            column = values[name]
            found |= np.fromiter((v is not None for v in column), bool, len(column))
            matrix[:, j] = np.array(column, dtype=np.float64)
        return matrix, found

    async def fetch_async(self, customer_ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """`fetch` in the event loop, for a store where `asynchronous` is true."""
        rows = await self._provider.online_read_async(
            config=self.store.config,
            table=self._view,
            entity_keys=self._keys(customer_ids),
            requested_features=list(self.features),
        )
        return self._matrix(rows)

    @staticmethod
    def _keys(customer_ids: list[str]) -> list[Any]:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        return [
            EntityKey(join_keys=[ENTITY], entity_values=[Value(string_val=cid)])
            for cid in customer_ids
        ]

    def _matrix(
        self, rows: Sequence[tuple[Any, dict[str, Any] | None]]
    ) -> tuple[np.ndarray, np.ndarray]:
        matrix = np.full((len(rows), len(self.features)), math.nan)
        found = np.zeros(len(rows), dtype=bool)
        for i, (_, values) in enumerate(rows):
            if not values:
                continue
            for j, name in enumerate(self.features):
                value = values.get(name)
                kind = value.WhichOneof("val") if value is not None else None
                if kind is not None and kind != "null_val":
                    matrix[i, j] = getattr(value, kind)
                    found[i] = True
        return matrix, found
