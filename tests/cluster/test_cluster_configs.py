"""The files in cluster/ are valid and keep the project's invariants.

Kubernetes manifests: required keys, apiVersion and kind; token auth on; the dashboard never
exposed outside the cluster; no work on the head; a GPU worker group that asks for GPUs; pinned
images that run the same Ray as the one the Dockerfile installs; a RayJob entrypoint that our CLI
accepts, over a spec whose paths every node can see. The cluster-launcher YAML is checked against
Ray's own schema.
"""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from taggant.jobs.cli import build_parser
from taggant.jobs.submit import check_shippable

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
KUBERAY_KINDS = {"RayCluster", "RayJob"}
EXPOSED_SERVICE_TYPES = {"LoadBalancer", "NodePort"}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def manifests() -> list[tuple[str, dict]]:
    paths = sorted((CLUSTER / "kuberay").glob("*.yaml"))
    return [(f"{path.name}:{doc['kind']}", doc) for path in paths for doc in documents(path)]


def ray_manifests() -> list[tuple[str, dict]]:
    return [(name, doc) for name, doc in manifests() if doc["kind"] in KUBERAY_KINDS]


def cluster_spec(doc: dict) -> dict:
    """The RayCluster spec of a RayCluster or of the cluster a RayJob creates."""
    return doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]


def groups(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"], *spec["workerGroupSpecs"]]


def containers(spec: dict) -> list[dict]:
    return [c for group in groups(spec) for c in group["template"]["spec"]["containers"]]


def dockerfile_arg(name: str) -> str:
    [value] = re.findall(rf"^ARG {name}=(\S+)$", (CLUSTER / "Dockerfile").read_text(), re.MULTILINE)
    return value


def launcher() -> dict:
    [config] = documents(CLUSTER / "launcher.yaml")
    return config


RAY_MANIFESTS = ray_manifests()
RAY = pytest.mark.parametrize("name, doc", RAY_MANIFESTS, ids=[name for name, _ in RAY_MANIFESTS])


def test_every_yaml_file_parses():
    files = sorted(CLUSTER.rglob("*.yaml"))
    expected = {"raycluster.yaml", "rayjob.yaml", "storage.yaml", "launcher.yaml"}
    assert {f.name for f in files} >= expected
    for path in files:
        assert documents(path), f"{path} is empty"


def test_manifests_name_their_api_and_kind():
    for name, doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), name
        assert doc["metadata"].get("name"), name
        if doc["kind"] in KUBERAY_KINDS:
            assert doc["apiVersion"] == "ray.io/v1", name
        else:
            assert (doc["apiVersion"], doc["kind"]) == ("v1", "PersistentVolumeClaim"), name
    assert {doc["kind"] for _, doc in manifests()} >= KUBERAY_KINDS


@RAY
def test_ray_groups_have_the_required_keys(name, doc):
    spec = cluster_spec(doc)
    assert {"rayStartParams", "template"} <= spec["headGroupSpec"].keys()
    required = {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"}
    for group in spec["workerGroupSpecs"]:
        assert required <= group.keys()
        replicas = group.get("replicas", group["minReplicas"])
        assert 0 <= group["minReplicas"] <= replicas <= group["maxReplicas"]
    for container in containers(spec):
        assert {"name", "image", "resources"} <= container.keys()


@RAY
def test_token_auth_is_on(name, doc):
    spec = cluster_spec(doc)
    if spec.get("authOptions", {}).get("mode") == "token":
        return
    # Without authOptions (KubeRay < 1.5.1) every container needs the mode and the token's Secret.
    for container in containers(spec):
        env = {e["name"]: e for e in container.get("env", [])}
        where = f"{name}: {container['name']}"
        assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", where
        assert "secretKeyRef" in env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}), where


@RAY
def test_the_dashboard_is_not_exposed(name, doc):
    head = cluster_spec(doc)["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert head.get("enableIngress", False) is False
    head_service = head.get("headService", {}).get("spec", {})
    assert head_service.get("type", "ClusterIP") not in EXPOSED_SERVICE_TYPES
    # On the pod's address only when something in the cluster needs it; auth is on (above).
    assert head["rayStartParams"].get("dashboard-host", "127.0.0.1") in {"127.0.0.1", "0.0.0.0"}


def test_no_manifest_exposes_a_service_or_an_ingress():
    for name, doc in manifests():
        assert doc["kind"] not in {"Ingress", "Route"}, name
        if doc["kind"] == "Service":
            assert doc["spec"].get("type", "ClusterIP") not in EXPOSED_SERVICE_TYPES, name


@RAY
def test_the_head_runs_no_tasks(name, doc):
    assert cluster_spec(doc)["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


@RAY
def test_there_is_a_cpu_pool_and_a_gpu_pool_that_asks_for_gpus(name, doc):
    def gpus(group: dict) -> int:
        resources = [c["resources"] for c in group["template"]["spec"]["containers"]]
        return sum(int(r.get("limits", {}).get("nvidia.com/gpu", 0)) for r in resources)

    workers = {g["groupName"]: g for g in cluster_spec(doc)["workerGroupSpecs"]}
    assert gpus(workers["gpu"]) > 0
    # Kubernetes requires GPU requests to equal limits; a request alone would not get a device.
    for container in workers["gpu"]["template"]["spec"]["containers"]:
        resources = container["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
    assert gpus(workers["cpu"]) == 0


@RAY
def test_images_are_pinned_and_run_the_dockerfile_ray(name, doc):
    spec = cluster_spec(doc)
    assert spec["rayVersion"] == dockerfile_arg("RAY_VERSION")
    for container in containers(spec):
        image = container["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag not in {"", "latest"}, f"{name}: {image}"
    assert {c["image"] for c in containers(spec)} == {launcher()["docker"]["image"]}


@RAY
def test_every_pod_mounts_the_shared_volume(name, doc):
    [claim] = [d for _, d in manifests() if d["kind"] == "PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for group in groups(cluster_spec(doc)):
        pod = group["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/shared"]
            claim_name = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
            assert claim_name == claim["metadata"]["name"]


def test_the_rayjob_runs_a_shipped_spec_that_every_node_can_read():
    [job] = [doc for _, doc in manifests() if doc["kind"] == "RayJob"]
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "taggant.jobs", "run"]
    args = build_parser().parse_args(argv[3:])
    assert args.address == "auto"
    # The image's WORKDIR is a checkout, so the spec path is relative to the repository root.
    spec = check_shippable(CLUSTER.parent / args.spec, args.set)
    assert spec.work_dir.startswith("/shared/")
    # A retry starts a new cluster: it resumes only if the work dir outlives the cluster.
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert job["spec"]["backoffLimit"] >= 1


def test_the_launcher_config_passes_rays_schema():
    validate_config(prepare_config(launcher()))


def test_rays_schema_check_is_real():
    broken = copy.deepcopy(launcher())
    broken["max_workers"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_the_launcher_keeps_the_invariants():
    config = launcher()
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    assert any(t["resources"].get("GPU", 0) > 0 for t in config["available_node_types"].values())
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--num-cpus=0" in head_start
    for commands in (config["head_start_ray_commands"], config["worker_start_ray_commands"]):
        [start] = [c for c in commands if "ray start" in c]
        assert start.startswith("RAY_AUTH_MODE=token ")
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert config["docker"]["image"].rpartition(":")[2] not in {"", "latest"}


def test_the_dockerfile_builds_a_non_root_python_312_image():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.12[-.\w]*$", text, re.MULTILINE)
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert re.search(r"^RUN pip install \. ", text, re.MULTILINE)  # the package, with megatron-core


def test_the_local_cluster_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(CLUSTER / "local-cluster.sh")], check=True)


EFA_PLUGIN_DIR = "/opt/amazon/ofi-nccl/nccl-plugin"
"""Where the image links aws-ofi-nccl's library folder; EFA nodes put it on LD_LIBRARY_PATH."""
EFA_INTERFACES = {"p4d.24xlarge": 4, "p5.48xlarge": 32}
"""EFA interfaces per instance type (one per network card)."""


def apt_packages(dockerfile: str) -> set[str]:
    installs = re.findall(
        r"apt-get install -y --no-install-recommends ([^&]+?)\s*\\?\s*&&", dockerfile
    )
    return {word for line in installs for word in line.replace("\\", " ").split()}


def test_the_image_compiles_megatrons_fusions_and_reaches_rdma():
    text = (CLUSTER / "Dockerfile").read_text()
    packages = apt_packages(text)
    # Triton (torch.compile of megatron's fusions) needs a C compiler and Python.h.
    assert "build-essential" in packages
    assert "Python.h" in text
    # NCCL's InfiniBand transport dlopens libibverbs; the mlx5 provider is in ibverbs-providers.
    assert {"libibverbs1", "ibverbs-providers"} <= packages
    # EFA and aws-ofi-nccl by default, linked where the EFA node configs look for the plugin.
    assert dockerfile_arg("EFA_INSTALLER_VERSION")
    assert "efa_installer.sh -y --skip-kmod" in text and EFA_PLUGIN_DIR in text


def test_transformer_engine_is_an_opt_in_build():
    text = (CLUSTER / "Dockerfile").read_text()
    assert dockerfile_arg("TRANSFORMER_ENGINE") == "0"
    [guard] = re.findall(r'if \[ "\$\{TRANSFORMER_ENGINE\}" = "1" \]; then(.+?)fi', text, re.DOTALL)
    # The one install of TE is the guarded one; the check reads metadata (no GPU at build time).
    assert text.count("transformer_engine[pytorch]") == guard.count("transformer_engine[pytorch]")
    assert guard.count("transformer_engine[pytorch]==${TRANSFORMER_ENGINE_VERSION}") == 1
    assert "import transformer_engine" not in text


def rdma_resources(container: dict) -> dict[str, str]:
    limits = container["resources"].get("limits", {})
    return {
        k: v for k, v in limits.items() if k.startswith("rdma/") or k == "vpc.amazonaws.com/efa"
    }


@RAY
def test_gpu_pods_request_rdma_devices_and_may_pin_memory(name, doc):
    workers = {g["groupName"]: g for g in cluster_spec(doc)["workerGroupSpecs"]}
    for container in workers["gpu"]["template"]["spec"]["containers"]:
        devices = rdma_resources(container)
        assert devices, f"{name}: the GPU pods ask for no RDMA device; NCCL would use TCP"
        for key, count in devices.items():
            assert container["resources"]["requests"][key] == count  # extended resources
        assert "IPC_LOCK" in container["securityContext"]["capabilities"]["add"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"]
        assert env.get("NCCL_IB_HCA") or env.get("FI_PROVIDER") == "efa"
    for container in workers["cpu"]["template"]["spec"]["containers"]:
        assert not rdma_resources(container)


def test_the_launchers_gpu_nodes_train_over_efa():
    config = launcher()
    gpu = config["available_node_types"]["gpu"]
    node = gpu["node_config"]
    interfaces = node["NetworkInterfaces"]
    assert len(interfaces) == EFA_INTERFACES[node["InstanceType"]]
    assert {i["InterfaceType"] for i in interfaces} == {"efa"}
    assert sorted(i["NetworkCardIndex"] for i in interfaces) == list(range(len(interfaces)))
    assert node["Placement"]["GroupName"]
    # Ray's AWS provider takes subnets and security groups from the interfaces only.
    from ray.autoscaler._private.aws.config import (
        _configure_subnets_and_groups_from_network_interfaces,
    )

    assert len(_configure_subnets_and_groups_from_network_interfaces(node)["SubnetIds"]) == len(
        interfaces
    )
    options = gpu["docker"]["worker_run_options"]
    devices = [o for o in options if o.startswith("--device=/dev/infiniband/uverbs")]
    assert len(devices) == len(interfaces)
    assert "--cap-add=IPC_LOCK" in options and "--ulimit memlock=-1:-1" in options
    env = dict(o.removeprefix("--env ").split("=", 1) for o in options if o.startswith("--env "))
    assert env["FI_PROVIDER"] == "efa"
    assert env["LD_LIBRARY_PATH"].split(":")[0] == EFA_PLUGIN_DIR


def test_every_interconnect_setting_is_documented():
    readme = (CLUSTER / "README.md").read_text()
    names = set()
    for _, doc in RAY_MANIFESTS:
        for container in containers(cluster_spec(doc)):
            names |= {e["name"] for e in container.get("env", [])}
    gpu_options = launcher()["available_node_types"]["gpu"]["docker"]["worker_run_options"]
    names |= {o.split()[1].split("=")[0] for o in gpu_options if o.startswith("--env ")}
    settings = {
        n for n in names if n.startswith(("NCCL_", "GLOO_", "FI_")) or n == "LD_LIBRARY_PATH"
    }
    assert {"NCCL_SOCKET_IFNAME", "NCCL_IB_HCA", "FI_PROVIDER"} <= settings
    for name in settings:
        assert f"`{name}=" in readme, f"{name} is set but not documented in cluster/README.md"
