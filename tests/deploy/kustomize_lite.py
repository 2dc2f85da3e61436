"""A small kustomize: renders the subset of kustomize that deploy/k8s uses, in pure Python.

The deploy tests render every overlay with it, and also with ``kubectl kustomize`` when
kubectl is installed, and require both outputs to be the same objects. It exists so
that ``make test`` validates the manifests on a machine without kubectl.

Supported, with kustomize's semantics (v5):

- ``resources``: local YAML files and directories holding a kustomization;
- ``configMapGenerator`` / ``secretGenerator``: ``literals``, ``files``, ``envs``;
  ``behavior`` create, merge or replace; only with the name hash suffix disabled
  (``generatorOptions.disableNameSuffixHash`` or the generator's ``options``);
- ``patches``: JSON 6902 operation lists (with ``target``), and strategic-merge patches
  made of maps and scalars only (a list in a strategic-merge patch needs the schema's
  merge keys: use a JSON 6902 patch for those);
- ``namespace``, ``labels`` (``pairs`` only: no selectors, no templates), ``replicas``,
  ``images`` (``newName``, ``newTag``, ``digest``).

Transformers run in kustomize's order: patches, namespace, labels, replicas, images.
Anything else (a field, a kind, a patch option) raises :class:`Unsupported` rather than
being rendered differently from kustomize. Command line, to look at a rendering::

    python -m tests.deploy.kustomize_lite deploy/k8s/overlays/dev
"""

from __future__ import annotations

import base64
import copy
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "images",
        "replicas",
        "patches",
        "configMapGenerator",
        "secretGenerator",
        "generatorOptions",
    }
)
# Kinds whose namespace handling is fully described by "set metadata.namespace" (or, for
# Namespace, "rename to the namespace"). Kinds that refer to namespaces elsewhere
# (RoleBinding subjects, webhooks, ...) would need more and are refused.
SUPPORTED_KINDS = frozenset(
    {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "StatefulSet",
        "Job",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PersistentVolumeClaim",
    }
)
CLUSTER_SCOPED_KINDS = frozenset({"Namespace"})
REPLICA_KINDS = frozenset({"Deployment", "ReplicaSet", "ReplicationController", "StatefulSet"})
# kustomize's "legacy" output order: these kinds first, in this order, the others after.
ORDER_FIRST = (
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
)
ORDER_LAST = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans: only true/false, not yes/no/on/off/y/n.

    kustomize reads and writes YAML 1.2, so it emits ``name: Y`` unquoted; YAML 1.1 (PyYAML's
    default) would read that back as a boolean.
    """


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_all(text: str) -> list[Any]:
    """The non-empty documents of a YAML text, read as kustomize reads them (YAML 1.2 booleans)."""
    return [d for d in yaml.load_all(text, Loader=Yaml12Loader) if d is not None]


class Unsupported(Exception):
    """The kustomization uses something this renderer does not reproduce."""


class KustomizeError(Exception):
    """The kustomization is wrong (kustomize itself would reject it, or we are stricter)."""


# --- entry points -------------------------------------------------------------------------


def build(directory: str | Path) -> list[Resource]:
    """Render the kustomization in ``directory``: the list of objects, in output order."""
    return sorted(_build(Path(directory).resolve()), key=_order_key)


def dump(resources: Iterable[Resource]) -> str:
    """Objects as one multi-document YAML text (keys sorted, like kustomize's output)."""
    return yaml.safe_dump_all(list(resources), sort_keys=True, default_flow_style=False)


def resource_id(res: Resource) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name): what kustomize treats as one object's identity."""
    meta = res.get("metadata") or {}
    return (_group(res), res.get("kind", ""), meta.get("namespace") or "", meta.get("name", ""))


# --- the build ----------------------------------------------------------------------------


def _build(directory: Path) -> list[Resource]:
    kfile = next((directory / n for n in KUSTOMIZATION_FILES if (directory / n).is_file()), None)
    if kfile is None:
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    k = (load_all(kfile.read_text(encoding="utf-8")) or [{}])[0]
    unknown = set(k) - SUPPORTED_FIELDS
    if unknown:
        raise Unsupported(f"{kfile}: fields {sorted(unknown)} are not supported")
    if k.get("kind", "Kustomization") != "Kustomization":
        raise Unsupported(f"{kfile}: kind {k.get('kind')!r} (only Kustomization)")

    resources: list[Resource] = []
    for entry in k.get("resources") or []:
        resources.extend(_load_resource(directory, entry))
    _check_unique(resources, kfile)

    options = k.get("generatorOptions") or {}
    for gen in k.get("configMapGenerator") or []:
        _generate(resources, directory, gen, options, "ConfigMap")
    for gen in k.get("secretGenerator") or []:
        _generate(resources, directory, gen, options, "Secret")
    _check_unique(resources, kfile)

    for patch in k.get("patches") or []:
        _apply_patch(resources, directory, patch)
    if k.get("namespace"):
        _set_namespace(resources, k["namespace"])
    for spec in k.get("labels") or []:
        _add_labels(resources, spec)
    for spec in k.get("replicas") or []:
        _set_replicas(resources, spec)
    for spec in k.get("images") or []:
        _set_image(resources, spec)

    for res in resources:
        if res.get("kind") not in SUPPORTED_KINDS:
            raise Unsupported(f"{kfile}: kind {res.get('kind')!r} is not supported")
    _check_unique(resources, kfile)
    return resources


def _load_resource(directory: Path, entry: str) -> list[Resource]:
    if "://" in entry or entry.startswith("git@"):
        raise Unsupported(f"remote resource {entry!r}")
    path = (directory / entry).resolve()
    if path.is_dir():
        return _build(path)
    if not path.is_file():
        raise KustomizeError(f"{directory}: resource {entry!r} not found")
    docs = load_all(path.read_text(encoding="utf-8"))
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise KustomizeError(f"{path}: every document needs apiVersion and kind")
        if doc["kind"].endswith("List"):
            raise Unsupported(f"{path}: List kinds")
    return docs


def _check_unique(resources: list[Resource], where: Path) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    for res in resources:
        rid = resource_id(res)
        if rid in seen:
            raise KustomizeError(f"{where}: {rid} defined twice")
        seen.add(rid)


# --- generators ---------------------------------------------------------------------------


def _generate(
    resources: list[Resource], directory: Path, gen: dict[str, Any], options: dict[str, Any], kind: str
) -> None:
    known = {"name", "behavior", "literals", "files", "envs", "options", "type"}
    if set(gen) - known:
        raise Unsupported(f"{kind} generator fields {sorted(set(gen) - known)}")
    if kind == "ConfigMap" and "type" in gen:
        raise KustomizeError("a ConfigMap has no type")
    opts = {**options, **(gen.get("options") or {})}
    if set(opts) - {"disableNameSuffixHash", "labels", "annotations"}:
        raise Unsupported(f"generator options {sorted(set(opts))}")
    if not opts.get("disableNameSuffixHash"):
        raise Unsupported(f"{kind} {gen.get('name')!r}: name hash suffixes (set disableNameSuffixHash)")

    data: dict[str, str] = {}
    for literal in gen.get("literals") or []:
        key, value = _split_pair(literal)
        data[key] = value
    for env_file in gen.get("envs") or []:
        for line in (directory / env_file).read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                key, value = _split_pair(line)
                data[key] = value
    for spec in gen.get("files") or []:
        key, _, rel = spec.partition("=") if "=" in spec else (Path(spec).name, "", spec)
        path = (directory / rel).resolve()
        if not path.is_relative_to(directory):
            raise KustomizeError(f"{spec!r}: files must be inside the kustomization's folder")
        data[key] = path.read_text(encoding="utf-8")
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()} if kind == "Secret" else data

    name = gen["name"]
    behavior = gen.get("behavior", "create")
    existing = [r for r in resources if r.get("kind") == kind and r["metadata"].get("name") == name]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"{kind} {name!r} exists already (use behavior: merge or replace)")
        res: Resource = {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}}
        if kind == "Secret":
            res["type"] = gen.get("type", "Opaque")
        if encoded:
            res["data"] = encoded
        resources.append(res)
    elif behavior in ("merge", "replace"):
        if len(existing) != 1:
            raise KustomizeError(f"{kind} {name!r}: behavior {behavior} needs exactly one existing object")
        res = existing[0]
        res["data"] = {**(res.get("data") or {}), **encoded} if behavior == "merge" else encoded
    else:
        raise KustomizeError(f"unknown generator behavior {behavior!r}")
    for field in ("labels", "annotations"):
        if opts.get(field):
            res["metadata"].setdefault(field, {}).update(opts[field])


def _split_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise KustomizeError(f"{text!r} is not KEY=VALUE")
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return key.strip(), value


# --- patches ------------------------------------------------------------------------------


def _apply_patch(resources: list[Resource], directory: Path, spec: dict[str, Any]) -> None:
    if set(spec) - {"path", "patch", "target"}:
        raise Unsupported(f"patch fields {sorted(set(spec) - {'path', 'patch', 'target'})}")
    if ("path" in spec) == ("patch" in spec):
        raise KustomizeError("a patch needs exactly one of path and patch")
    text = (directory / spec["path"]).read_text(encoding="utf-8") if "path" in spec else spec["patch"]
    docs = load_all(text)
    target = spec.get("target")
    if len(docs) == 1 and isinstance(docs[0], list):
        if not target:
            raise KustomizeError("a JSON 6902 patch needs a target")
        # kustomize reads JSON 6902 patches as YAML 1.1 (`value: Y` is a boolean there).
        ops = yaml.safe_load(text)
        for res in _select(resources, target):
            _json6902(res, ops)
        return
    for doc in docs:
        if not isinstance(doc, dict):
            raise KustomizeError("a strategic-merge patch is a map")
        if target:
            matched = _select(resources, target)
        else:
            meta = doc.get("metadata") or {}
            selector = {"kind": doc.get("kind"), "name": re.escape(meta.get("name", ""))}
            if meta.get("namespace"):
                selector["namespace"] = meta["namespace"]
            matched = _select(resources, selector)
        body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind")}
        if "metadata" in body:
            body["metadata"] = {k: v for k, v in body["metadata"].items() if k not in ("name", "namespace")}
        for res in matched:
            _strategic_merge(res, body, path="")


def _select(resources: list[Resource], target: dict[str, Any]) -> list[Resource]:
    if set(target) - {"group", "version", "kind", "name", "namespace"}:
        raise Unsupported(f"patch target fields {sorted(set(target))} (no label/annotation selectors)")
    matched = []
    for res in resources:
        group, _, version = res["apiVersion"].rpartition("/")
        meta = res.get("metadata") or {}
        checks = {
            "group": group,
            "version": version,
            "kind": res.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace") or "",
        }
        if all(re.fullmatch(str(target[f]), checks[f]) for f in target):
            matched.append(res)
    if not matched:
        raise KustomizeError(f"patch target {target} matches nothing")
    return matched


def _strategic_merge(dst: dict[str, Any], patch: dict[str, Any], path: str) -> None:
    for key, value in patch.items():
        where = f"{path}/{key}"
        if key.startswith("$"):
            raise Unsupported(f"strategic-merge directive {where}")
        if value is None:
            dst.pop(key, None)
        elif isinstance(value, list):
            raise Unsupported(f"list at {where} in a strategic-merge patch (use a JSON 6902 patch)")
        elif isinstance(value, dict) and isinstance(dst.get(key), dict):
            _strategic_merge(dst[key], value, where)
        elif isinstance(value, dict):
            dst[key] = {}
            _strategic_merge(dst[key], value, where)
        else:
            dst[key] = value


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KustomizeError(f"{path}: no index {part!r}")
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KustomizeError(f"{path}: no member {part!r}")
    return node


def _json6902(doc: Resource, ops: list[dict[str, Any]]) -> None:
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        parts = _pointer(path)
        parent, last = _walk(doc, parts[:-1], path), parts[-1]
        if kind == "test":
            if _walk(doc, parts, path) != op.get("value"):
                raise KustomizeError(f"test failed at {path}")
            continue
        if kind in ("move", "copy"):
            source = _pointer(op["from"])
            value = copy.deepcopy(_walk(doc, source, op["from"]))
            if kind == "move":
                _remove(_walk(doc, source[:-1], op["from"]), source[-1], op["from"])
            _add(parent, last, value, path)
        elif kind == "add":
            _add(parent, last, copy.deepcopy(op["value"]), path)
        elif kind == "remove":
            _remove(parent, last, path)
        elif kind == "replace":
            _walk(doc, parts, path)  # must exist
            _remove(parent, last, path)
            _add(parent, last, copy.deepcopy(op["value"]), path)
        else:
            raise KustomizeError(f"unknown JSON 6902 op {kind!r}")


def _add(parent: Any, last: str, value: Any, path: str) -> None:
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise KustomizeError(f"{path}: bad index")
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise KustomizeError(f"{path}: parent is not a container")


def _remove(parent: Any, last: str, path: str) -> None:
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    elif isinstance(parent, dict) and last in parent:
        del parent[last]
    else:
        raise KustomizeError(f"{path}: nothing to remove")


# --- transformers -------------------------------------------------------------------------


def _set_namespace(resources: list[Resource], namespace: str) -> None:
    for res in resources:
        if res["kind"] == "Namespace":
            res["metadata"]["name"] = namespace  # kustomize renames Namespace objects
        elif res["kind"] not in CLUSTER_SCOPED_KINDS:
            res["metadata"]["namespace"] = namespace


def _add_labels(resources: list[Resource], spec: dict[str, Any]) -> None:
    if set(spec) - {"pairs", "includeSelectors", "includeTemplates"}:
        raise Unsupported(f"labels fields {sorted(set(spec))}")
    if spec.get("includeSelectors") or spec.get("includeTemplates"):
        raise Unsupported("labels with includeSelectors or includeTemplates")
    for res in resources:
        labels = res["metadata"].get("labels") or {}
        labels.update({str(k): str(v) for k, v in (spec.get("pairs") or {}).items()})
        res["metadata"]["labels"] = labels


def _set_replicas(resources: list[Resource], spec: dict[str, Any]) -> None:
    matched = [r for r in resources if r["kind"] in REPLICA_KINDS and r["metadata"]["name"] == spec["name"]]
    if not matched:
        raise KustomizeError(f"replicas: no workload named {spec['name']!r}")
    for res in matched:
        res.setdefault("spec", {})["replicas"] = int(spec["count"])


def _set_image(resources: list[Resource], spec: dict[str, Any]) -> None:
    if set(spec) - {"name", "newName", "newTag", "digest"}:
        raise Unsupported(f"images fields {sorted(set(spec))}")
    for res in resources:
        for container in _containers(res):
            image = container.get("image")
            if not isinstance(image, str):
                continue
            name, suffix = _split_image(image)
            if name != spec["name"]:
                continue
            name = spec.get("newName") or name
            if spec.get("digest"):
                suffix = "@" + str(spec["digest"])
            elif spec.get("newTag") is not None:
                suffix = ":" + str(spec["newTag"])
            container["image"] = name + suffix


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def _split_image(image: str) -> tuple[str, str]:
    """("name", ":tag" / "@digest" / "") for an image reference."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return _split_image(name)[0], "@" + digest
    colon = image.rfind(":")
    if colon > image.rfind("/"):
        return image[:colon], image[colon:]
    return image, ""


# --- helpers ------------------------------------------------------------------------------


def _group(res: Resource) -> str:
    return str(res.get("apiVersion", "")).rpartition("/")[0]


def _order_key(res: Resource) -> tuple[int, str, str, str]:
    kind = res.get("kind", "")
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    _, _, namespace, name = resource_id(res)
    return (rank, kind, namespace, name)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.deploy.kustomize_lite <kustomization folder>")
    sys.stdout.write(dump(build(sys.argv[1])))
