"""kustomize_lite on a small kustomization that uses every feature it supports, checked
against known answers and, when kubectl is installed, against ``kubectl kustomize``."""

from __future__ import annotations

import base64
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import kustomize_lite
from tests.deploy.test_manifests import KUBECTL, NO_KUBECTL_REASON

FILES = {
    "base/kustomization.yaml": """
        resources: [app.yaml]
        labels:
          - pairs: {team: core}
        generatorOptions: {disableNameSuffixHash: true}
        configMapGenerator:
          - name: settings
            literals: [A=1, B="quoted value"]
    """,
    "base/app.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: app, annotations: {keep: "yes", drop: "me"}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: app}}
          template:
            metadata: {labels: {app: app}}
            spec:
              initContainers: [{name: init, image: "localhost:5000/tools:1.0"}]
              containers:
                - name: app
                  image: app
                  env: [{name: X, value: "1"}]
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: app}
        spec:
          selector: {app: app}
          ports: [{port: 80}]
    """,
    "overlay/kustomization.yaml": """
        namespace: ns1
        resources: [../base]
        labels:
          - pairs: {env: test}
        generatorOptions: {disableNameSuffixHash: true}
        configMapGenerator:
          - name: settings
            behavior: replace
            envs: [settings.env]
            files: [conf=app.conf, app.conf]
        secretGenerator:
          - name: creds
            type: kubernetes.io/basic-auth
            literals: [username=u, password=p]
        patches:
          - path: smp.yaml
          - target: {kind: Deployment, name: app}
            patch: |-
              - op: add
                path: /spec/template/spec/containers/0/env/-
                value: {name: Z, value: "2"}
              - op: test
                path: /spec/template/spec/containers/0/env/0/name
                value: X
              - op: copy
                from: /spec/selector
                path: /metadata/annotations/unused
              - op: remove
                path: /metadata/annotations/unused
          - target: {version: v1, kind: Service}
            patch: |-
              apiVersion: v1
              kind: Service
              metadata: {name: ignored-with-a-target, labels: {exposed: "true"}}
              spec: {type: NodePort}
        replicas:
          - name: app
            count: 2
        images:
          - name: app
            newName: registry.example.com/app
            digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
          - name: localhost:5000/tools
            newTag: "2.0"
    """,
    "overlay/smp.yaml": """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: app, annotations: {drop: null, added: "1"}}
        spec:
          strategy: {type: Recreate}
    """,
    "overlay/settings.env": "# comment\nC=3\n\nD=four\n",
    "overlay/app.conf": "line one\nline two\n",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for name, text in FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return tmp_path


def render(tree: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in kustomize_lite.build(tree / "overlay")}


def test_every_supported_feature_renders_as_kustomize_does(tree: Path) -> None:
    objs = render(tree)
    assert set(objs) == {("Deployment", "app"), ("Service", "app"), ("ConfigMap", "settings"), ("Secret", "creds")}
    for obj in objs.values():
        assert obj["metadata"]["namespace"] == "ns1"
    dep = objs["Deployment", "app"]
    assert dep["metadata"]["labels"] == {"team": "core", "env": "test"}
    assert dep["metadata"]["annotations"] == {"keep": "yes", "added": "1"}
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "app"}, "labels: pairs only"
    pod = dep["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"].startswith("registry.example.com/app@sha256:0123")
    assert pod["containers"][0]["env"] == [{"name": "X", "value": "1"}, {"name": "Z", "value": "2"}]
    assert pod["initContainers"][0]["image"] == "localhost:5000/tools:2.0"
    svc = objs["Service", "app"]
    assert svc["spec"]["type"] == "NodePort" and svc["metadata"]["labels"]["exposed"] == "true"
    assert objs["ConfigMap", "settings"]["data"] == {
        "C": "3",
        "D": "four",
        "conf": "line one\nline two\n",
        "app.conf": "line one\nline two\n",
    }
    secret = objs["Secret", "creds"]
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == {"username": "u", "password": "p"}


def test_kubectl_kustomize_renders_the_same(tree: Path) -> None:
    if KUBECTL is None:
        pytest.skip(NO_KUBECTL_REASON)
    out = subprocess.run(
        [KUBECTL, "kustomize", str(tree / "overlay")], capture_output=True, text=True, timeout=60, check=True
    )
    real = {(o["kind"], o["metadata"]["name"]): o for o in kustomize_lite.load_all(out.stdout)}
    assert real == render(tree)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("commonLabels", "{a: b}"),
        ("labels", "[{pairs: {a: b}, includeSelectors: true}]"),
        ("patches", "[{target: {kind: Deployment, labelSelector: 'app=app'}, patch: '[]'}]"),
        ("patches", '[{patch: "apiVersion: apps/v1\\nkind: Deployment\\nmetadata: {name: app}\\nspec: {a: [1]}"}]'),
        ("configMapGenerator", "[{name: x, literals: [A=1]}]"),
    ],
)
def test_what_it_does_not_reproduce_is_refused(tree: Path, field: str, value: str) -> None:
    (tree / "base" / "kustomization.yaml").write_text(
        f"resources: [app.yaml]\n{field}: {value}\n",
        encoding="utf-8",
    )
    with pytest.raises(kustomize_lite.Unsupported):
        kustomize_lite.build(tree / "base")
