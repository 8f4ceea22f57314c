"""Model names to ordered deployment candidates: model groups, aliases and catalog routers.

A model id (or alias) names a group of deployments of one model, load-balanced
by fewest outstanding requests. A router id names several models and a policy;
it picks, per request, the deployments that can serve it (tools, JSON schema,
context length), in policy order, skipping deployments whose circuit is open
or whose health probe fails. Replicas join and leave a model's group at run time
(:meth:`Router.add`, :meth:`Router.remove`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from shoal.core.backend import ModelCard
from shoal.core.context import RequestContext
from shoal.core.deployment import Deployment, Plan
from shoal.core.operation import Operation
from shoal.errors import InvalidRequestError, ModelNotFoundError, OverloadedError
from shoal.routing.affinity import Balancer, BalanceSpec
from shoal.routing.strategies import by_load, lacks_hard_need, order_models, unfit


@dataclass(frozen=True)
class RouterSpec:
    """A catalog router: a name clients use as ``model``, the models it picks from, and how."""

    id: str
    models: tuple[str, ...]
    policy: str = "quality"
    aliases: tuple[str, ...] = ()
    description: str = ""
    created: int = 0

    def card(self, context_length: int) -> ModelCard:
        """How /v1/models lists this router."""
        return ModelCard(id=self.id, owned_by="shoal", created=self.created, context_length=context_length,
                         capabilities=("router",), aliases=self.aliases, description=self.description,
                         extra={"router": {"policy": self.policy, "models": list(self.models)}})


def live_card(deps: Sequence[Deployment]) -> ModelCard:
    """The model's card, plus its local deployments' mode and state (``deployments``) when it has any."""
    card = deps[0].card
    states = [state for dep in deps if (state := dep.status()) is not None]
    return replace(card, extra={**card.extra, "deployments": states}) if states else card


class Router:
    """Resolves names and plans candidates.

    Besides the deployments' own state it holds only the ``balancer``'s affinity indexes (models
    whose ``balance`` is ``prefix``); the others go by fewest outstanding requests. ``expected`` are
    the cards of models whose deployments may all come later (replicas found at run time): their
    names are known from the start, so routers may list them.
    """

    def __init__(self, deployments: Sequence[Deployment], routers: Sequence[RouterSpec] = (),
                 balancing: Mapping[str, BalanceSpec] | None = None, expected: Sequence[ModelCard] = ()) -> None:
        self.deployments = list(deployments)
        self.balancer = Balancer(balancing)
        self.groups: dict[str, list[Deployment]] = {}
        self._names: dict[str, str] = {}
        self._known: dict[str, ModelCard] = {}
        for dep in deployments:
            self.groups.setdefault(dep.card.id, []).append(dep)
        for deps in self.groups.values():
            self._learn(deps[0].card, (a for d in deps for a in d.card.aliases))
        for card in expected:
            self._learn(card, card.aliases)
        self.routers: dict[str, RouterSpec] = {}
        for spec in routers:
            unknown = [m for m in spec.models if m not in self._names]
            if unknown:
                raise ValueError(f"router {spec.id}: unknown model(s) {', '.join(unknown)}")
            for name in (spec.id, *spec.aliases):
                if name in self._names or name in self.routers:
                    raise ValueError(f"router {spec.id}: the name {name!r} is already taken")
                self.routers[name] = spec

    def is_router(self, name: str) -> bool:
        """Whether ``name`` (an id or alias) is one of the catalog's routers."""
        return name in self.routers

    def cards(self, context: RequestContext | None = None) -> list[ModelCard]:
        """One card per model (its first deployment's, with local models' live state) and per router."""
        out = [live_card(deps) for model_id, deps in self.groups.items()
               if context is None or (context.may_use(model_id) and self.usable(model_id, context))]
        seen: set[str] = set()
        for spec in self.routers.values():
            if spec.id in seen or (context is not None and not self._allowed(spec, context)):
                continue
            seen.add(spec.id)
            lengths = [self._known[self._names[m]].context_length for m in spec.models]
            out.append(spec.card(max(lengths, default=0)))
        return out

    def usable(self, model_id: str, context: RequestContext) -> list[Deployment]:
        """The deployments of ``model_id`` this caller may use (reserved ones only for their keys)."""
        return [dep for dep in self.groups.get(model_id, ()) if dep.admits(context)]

    def _allowed(self, spec: RouterSpec, context: RequestContext) -> list[str]:
        models = [self._names[m] for m in spec.models]
        if not context.may_use(spec.id):
            models = [m for m in models if context.may_use(m)]
        return [m for m in models if self.usable(m, context)]

    def resolve(self, model: str, context: RequestContext | None = None) -> Deployment:
        """The deployment a name would go to first, ignoring the request (404 if unknown or not allowed)."""
        context = context or RequestContext()
        groups = self._groups_for(model, context)
        return by_load(groups[0])[0]

    def _groups_for(self, model: str, context: RequestContext) -> list[list[Deployment]]:
        spec = self.routers.get(model)
        if spec is not None:
            groups = [self.usable(m, context) for m in self._allowed(spec, context)]
        else:
            model_id = self._names.get(model)
            usable = self.usable(model_id, context) if model_id is not None and context.may_use(model_id) else []
            groups = [usable] if usable else []
            if model_id is not None and not usable and not self.groups.get(model_id) and context.may_use(model_id):
                raise _no_replicas(model)
        if not groups:
            raise ModelNotFoundError(model)
        return groups

    def plan(self, request: Operation, context: RequestContext) -> Plan:
        """Candidates for ``request``: capable, circuit closed, in policy then load order.

        A router never sends a request to a deployment that lacks what it needs
        (400 when none can serve it); a model named directly prefers its capable
        deployments and otherwise lets its backend answer, except for images: a
        deployment without ``vision`` never gets one (400 ``model_not_capable``).
        503 (with ``retry-after``) when every capable one is cooling down after failures.
        """
        spec = self.routers.get(request.model)
        groups: list[Sequence[Deployment]] = list(self._groups_for(request.model, context))
        if spec is not None:
            groups = order_models(groups, spec.policy, request)
        capable: list[Deployment] = []
        reasons: list[str] = []
        for deps in groups:
            for dep in self.balancer.order(deps, request, context):
                serves = "/".join(sorted(dep.backend.operations))
                why = unfit(dep.card, request) if dep.serves(request) else f"serves {serves}, not {request.kind}"
                if why is None:
                    capable.append(dep)
                else:
                    reasons.append(f"{dep.name} {why}")
        if not capable and spec is None:
            # A model named directly: its own backend answers what it cannot do (as without a catalog).
            capable = [dep for deps in groups for dep in self.balancer.order(deps, request, context)
                       if dep.serves(request) and not lacks_hard_need(dep.card, request)]
        if not capable:
            raise InvalidRequestError(f"No deployment of {request.model!r} can serve this request: "
                                      + "; ".join(dict.fromkeys(reasons)) + ".", param="model",
                                      code="model_not_capable")
        ready = [dep for dep in capable if dep.available()]
        if not ready:
            wait = min(dep.breaker.retry_in() for dep in capable)
            raise OverloadedError(f"Every deployment of {request.model!r} is failing; retry shortly.",
                                  code="upstream_unavailable", headers={"retry-after": str(max(1, round(wait)))})
        self.balancer.routed(ready[0], request, context)
        return Plan(model=request.model, candidates=ready)

    # -- replicas joining and leaving (routing/discovery.py decides which) ---------------------------

    def _learn(self, card: ModelCard, aliases: Iterable[str]) -> None:
        """Know ``card``'s model under its id and ``aliases`` (first come keeps a name)."""
        self._known.setdefault(card.id, card)
        for name in (card.id, *aliases):
            self._names.setdefault(name, card.id)

    def add(self, dep: Deployment) -> None:
        """Balance ``dep`` with its model's other deployments from the next plan on."""
        if any(d is dep for d in self.deployments):
            return
        if dep.card.id not in self._known and any(name in self.routers for name in (dep.card.id, *dep.card.aliases)):
            raise ValueError(f"deployment {dep.name}: the model name {dep.card.id!r} is a router's")
        self._learn(dep.card, dep.card.aliases)
        # New lists rather than appends: a plan or scrape iterating the old ones is not disturbed.
        self.groups[dep.card.id] = [*self.groups.get(dep.card.id, ()), dep]
        self.deployments = [*self.deployments, dep]

    def remove(self, dep: Deployment) -> bool:
        """Plan no new request on ``dep`` (its requests in flight go on); False if it was not here."""
        if not any(d is dep for d in self.deployments):
            return False
        self.deployments = [d for d in self.deployments if d is not dep]
        rest = [d for d in self.groups.get(dep.card.id, ()) if d is not dep]
        if rest:
            self.groups[dep.card.id] = rest
        else:
            # The model's names stay known: with no replica it answers 503, not 404.
            self.groups.pop(dep.card.id, None)
        return True


def _no_replicas(model: str) -> OverloadedError:
    return OverloadedError(f"No replica of {model!r} is serving right now; retry shortly.", code="no_replicas",
                           headers={"retry-after": "1"})
