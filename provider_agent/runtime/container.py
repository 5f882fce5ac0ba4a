"""The container runtime (opt-in): buyers' OCI images under podman, every limit on, usage measured.

podman runs rootful with ``--runtime runc`` (crun fails on cgroup v1 hosts such as CI's) in a
storage of the agent's own (``--root``/``--runroot``/``--tmpdir`` under the state directory),
so a buyer's image never touches the provider's other images and its names shadow nothing.

Every container runs with (the invariants, see ``run_argv``):

- no network (``--network none``: a loopback only) unless the job asks for it *and* the
  provider allows it (``ContainerConfig.allow_network``);
- a read-only root file system (``--read-only``, without podman's writable /tmp, /run and
  /var/tmp) and one writable place, ``/work``: the run's scratch (``scratch.Workspace``), a
  tmpfs of ``work_mib`` mounted by the agent and bound in, so its size is the kernel's limit and
  its files are still there to collect when the container is gone; ``/work/out`` is the run's
  output; the buyer's input files are bound read-only at ``/input``;
- memory (swap included: ``--memory-swap`` = ``--memory``), CPU (``--cpus``), pids, a 16 MiB
  ``/dev/shm``, ``--ulimit nofile`` and ``--ulimit nproc`` always explicit (root here lacks
  CAP_SYS_RESOURCE: runc cannot raise an unset rlimit and the container fails to start);
- ``--cap-drop all``, ``--security-opt no-new-privileges``, and a non-root user,
  ``--user 65534:65534`` whatever the image says. (Not ``--userns=auto``: it needs a
  ``containers`` range in /etc/subuid and /etc/subgid and, without idmapped mounts, a chowned
  copy of each image per mapping - slower starts for no gain here: the container sees no host
  file but its two bound directories, which belong to this run alone.)
- a wall-clock kill (SIGKILL to every process of the container's cgroup at the deadline;
  ``--timeout`` as a backstop should the agent die), and stdout bounded (over it: killed,
  status ``output``).

A finished run's container is removed by a janitor thread, off the lease's path (``podman rm``
costs 30-80 ms); ``settle`` waits for it, ``close`` finishes it, and a new runtime removes what
a crashed agent left (containers labelled ``cona.run``, run cgroups of its prefix).

Usage - CPU seconds, peak memory, wall time - comes from the run's own cgroup and the agent's
clock (``cgroup.RunCgroup``), never from the workload. Statuses: ``ok``, ``exit``, ``signal``
(exit code ``-signum``), ``memory-limit`` (killed by the OOM killer), ``disk-limit`` (a failed
run whose scratch is full), ``wall-timeout``, ``output`` (stdout or output files over a cap),
``exec-error`` (podman could not start it: the detail says why).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import queue
import re
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from marketplace.errors import AgentError, InputError
from provider_agent.runtime.cdi import check_device_name
from provider_agent.runtime.cgroup import RunCgroup, sweep
from provider_agent.runtime.images import ImageRejected, RegistryPolicy, host_arch, inspect_archive, parse_ref
from provider_agent.runtime.scratch import (MIB, InputData, OutputBlob, OutputCaps, RunOutcome, Workspace,
                                            unmount_tree)

log = logging.getLogger(__name__)

NOBODY = (65534, 65534)
INPUT_DIR, WORK_DIR = "/input", "/work"
STDERR_TAIL = 4096
#: how long after a kill the agent waits for podman to return before it gives up on the run
KILL_GRACE = 15.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class ContainerUnavailable(AgentError):
    """podman or runc is missing or does not work: the provider cannot offer containers."""

    code = "container-unavailable"


@dataclass(frozen=True, slots=True)
class ContainerLimits:
    """One run's limits (the lease's, within the provider's ceilings)."""

    memory_mib: int = 512
    cpus: float = 1.0
    pids: int = 256
    wall_seconds: float = 600.0
    work_mib: int = 256
    max_output_bytes: int = 16 * MIB
    outputs: OutputCaps = field(default_factory=OutputCaps)
    nofile: int = 1024
    nproc: int = 4096

    def __post_init__(self) -> None:
        checks = (("memory_mib", self.memory_mib >= 8), ("cpus", self.cpus > 0), ("pids", self.pids >= 1),
                  ("wall_seconds", self.wall_seconds > 0), ("work_mib", self.work_mib >= 1),
                  ("max_output_bytes", self.max_output_bytes >= 0), ("nofile", self.nofile >= 16),
                  ("nproc", self.nproc >= 1))
        for name, good in checks:
            if not good:
                raise InputError(f"container limit {name} is out of range", field=f"container_limits.{name}",
                                 hint="memory>=8 MiB, cpus>0, pids>=1, wall>0 s, work>=1 MiB, nofile>=16")


@dataclass(frozen=True)
class ContainerJob:
    """What a buyer asks to run. ``image``: ``sha256:HEX`` of an OCI archive the agent loaded
    (``load_archive``) or a registry reference on the provider's allowlist; ``argv`` replaces
    the image's command (empty: the image's own); ``devices``: CDI names the agent assigned."""

    image: str
    argv: tuple[str, ...] = ()
    stdin: bytes = b""
    inputs: Mapping[str, InputData] = field(default_factory=dict)
    env: tuple[tuple[str, str], ...] = ()
    network: bool = False
    devices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerResult(RunOutcome):
    """One run's outcome; ``cpu_seconds`` is the metered usage, ``result_hash`` goes on chain."""

    status: str
    exit_code: int
    output: bytes
    cpu_seconds: float
    peak_memory_bytes: int
    wall_ms: float
    detail: str = ""
    files: tuple[OutputBlob, ...] = ()
    stderr: bytes = b""


@dataclass(frozen=True)
class ContainerConfig:
    """The provider's side: where podman keeps this agent's images, what it allows."""

    storage: Path
    registries: RegistryPolicy = RegistryPolicy()
    #: registry hosts reached without TLS (a local registry on the loopback only)
    insecure_registries: tuple[str, ...] = ()
    allow_network: bool = False
    podman: str = "podman"
    oci_runtime: str = "runc"
    user: tuple[int, int] = NOBODY


_LIMIT_KEYS = {"mem": "memory_mib", "cpus": "cpus", "pids": "pids", "wall": "wall_seconds", "work": "work_mib",
               "output": "max_output_bytes"}


def parse_limits(text: str, base: ContainerLimits = ContainerLimits()) -> ContainerLimits:
    """``mem=MiB,cpus=N,pids=N,wall=S,work=MiB,output=MiB`` (any of them) over ``base``."""
    values: dict[str, object] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, sep, val = part.partition("=")
        if not sep or key.strip() not in _LIMIT_KEYS:
            raise InputError(f"bad container limit {part!r}", field="container_limits",
                             hint=f"KEY=VALUE with KEY one of {', '.join(_LIMIT_KEYS)}")
        key = key.strip()
        try:
            num = float(val) if key in ("cpus", "wall") else int(val)
        except ValueError:
            raise InputError(f"container limit {key}={val!r} is not a number", field=f"container_limits.{key}") \
                from None
        values[_LIMIT_KEYS[key]] = num * MIB if key == "output" else num
    return replace(base, **values)


def within(asked: ContainerLimits, ceiling: ContainerLimits) -> ContainerLimits:
    """A lease's limits lowered to the provider's ceilings."""
    return replace(asked, memory_mib=min(asked.memory_mib, ceiling.memory_mib), cpus=min(asked.cpus, ceiling.cpus),
                   pids=min(asked.pids, ceiling.pids), wall_seconds=min(asked.wall_seconds, ceiling.wall_seconds),
                   work_mib=min(asked.work_mib, ceiling.work_mib),
                   max_output_bytes=min(asked.max_output_bytes, ceiling.max_output_bytes))


def usage_for_container(cpu_seconds: float, wall_ms: float, units: int, remaining_seconds: int) -> int:
    """Unit-seconds billed for a container run: its wall time (the devices were held for it),
    at least its CPU time over the units, at least 1, at most ``units x remaining`` (the contract)."""
    used = max(1, math.ceil(wall_ms / 1000), math.ceil(cpu_seconds / max(1, units)))
    return min(used, units * remaining_seconds)


class ContainerRuntime:
    """Runs ``ContainerJob``s under ``ContainerLimits``; safe to share between threads."""

    def __init__(self, config: ContainerConfig) -> None:
        self.config = config
        self.storage = Path(config.storage)
        for sub in ("root", "tmp", "runs"):
            (self.storage / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.storage, 0o700)
        os.chmod(self.storage / "runs", 0o711)  # the container's user must reach its run's directories
        # run cgroups (and the runroot) are named after this storage, so agents sharing a machine
        # never sweep each other's
        tag = hashlib.sha256(str(self.storage.resolve()).encode()).hexdigest()[:10]
        self.prefix = f"r{tag[:8]}-"
        # podman refuses a runroot over 50 characters (it holds sockets): a short one under /run
        self.runroot = (Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())) / f"cona-{tag}"
        self.runroot.mkdir(mode=0o700, exist_ok=True)
        self._images: dict[str, str] = {}  # archive sha256 or registry reference -> image id
        self._lock = threading.Lock()
        # stopped containers are removed off the run's path (``podman rm`` costs 30-80 ms a run)
        self._trash: queue.Queue[str | None] = queue.Queue()
        self._janitor = threading.Thread(target=self._sweep_containers, name="container-janitor", daemon=True)
        self._janitor.start()
        self._remove_stale()

    # -- podman -------------------------------------------------------------------------

    def podman_argv(self, *args: str) -> list[str]:
        s = self.storage
        return [self.config.podman, "--root", str(s / "root"), "--runroot", str(self.runroot),
                "--tmpdir", str(s / "tmp"), "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                "--events-backend", "none", "--runtime", self.config.oci_runtime, *args]

    def _podman(self, *args: str, timeout: float = 120.0) -> str:
        try:
            proc = subprocess.run(self.podman_argv(*args), capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise ContainerUnavailable(f"{self.config.podman} is not installed",
                                       hint="apt-get install podman runc (make bootstrap does)") from None
        except subprocess.TimeoutExpired:
            raise AgentError(f"podman {args[0]} did not answer in {timeout:g} s") from None
        if proc.returncode != 0:
            raise AgentError(f"podman {args[0]} failed: {_last_error(proc.stderr)}")
        return proc.stdout

    def check(self) -> str:
        """podman's and the OCI runtime's versions; raises ``ContainerUnavailable`` when either is missing."""
        if shutil.which(self.config.oci_runtime) is None:
            raise ContainerUnavailable(f"the OCI runtime {self.config.oci_runtime} is not installed",
                                       hint="apt-get install runc")
        return self._podman("version", "--format", "{{.Client.Version}}").strip()

    def _remove_stale(self) -> None:
        """Containers and run cgroups a crashed agent left behind (nothing of theirs runs any more)."""
        try:
            names = self._podman("ps", "--all", "--filter", "label=cona.run", "--format", "{{.Names}}").split()
        except ContainerUnavailable:
            names = []
        except AgentError as exc:
            log.warning("cannot list left-over containers: %s", exc)
            names = []
        for name in names:
            self._trash.put(name)
        self.settle()
        sweep(self.prefix)

    def _sweep_containers(self) -> None:
        while True:
            name = self._trash.get()
            try:
                if name is None:
                    return
                proc = subprocess.run(self.podman_argv("rm", "--force", "--time", "0", name), capture_output=True,
                                      text=True, timeout=120)
                if proc.returncode != 0 and "no such container" not in proc.stderr:
                    log.warning("container %s not removed: %s", name, _last_error(proc.stderr))
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("container %s not removed: %s", name, exc)
            finally:
                self._trash.task_done()

    def settle(self) -> None:
        """Wait until every finished run's container is removed."""
        self._trash.join()

    def close(self) -> None:
        """Remove the finished containers, unmount what podman left mounted under this storage (its
        overlay home); the images stay for the next start."""
        self._trash.put(None)
        self._janitor.join(timeout=120)
        unmount_tree(self.storage)
        unmount_tree(self.runroot)
        shutil.rmtree(self.runroot, ignore_errors=True)

    # -- images -------------------------------------------------------------------------

    def load_archive(self, path: Path, digest: str) -> str:
        """Check the OCI archive named by ``digest`` (the sha256 of its bytes) and load it; returns
        the image id. Refuses a corrupt archive or another architecture's image before loading."""
        key = "sha256:" + digest.removeprefix("sha256:")
        with self._lock:
            if key in self._images:
                return self._images[key]
        info = inspect_archive(Path(path), key)
        self._podman("load", "--quiet", "--input", str(path), timeout=600)
        self._check_platform(info.image_id, str(path))
        with self._lock:
            self._images[key] = info.image_id
        log.info("image archive %s loaded as %s (%d layer bytes)", key[:19], info.image_id[:12], info.layer_bytes)
        return info.image_id

    def pull(self, reference: str) -> str:
        """Pull an allowlisted registry image; returns its image id (what runs: a name can be re-pointed,
        an id cannot)."""
        ref = self.config.registries.check(reference)
        with self._lock:
            if str(ref) in self._images:
                return self._images[str(ref)]
        tls = "false" if ref.host in self.config.insecure_registries else "true"
        try:
            image_id = self._podman("pull", "--quiet", f"--tls-verify={tls}", str(ref), timeout=600).strip()
        except AgentError as exc:
            raise ImageRejected(f"{ref} cannot be pulled: {exc.message}", field="image") from None
        self._check_platform(image_id, str(ref))
        with self._lock:
            self._images[str(ref)] = image_id
        return image_id

    def _check_platform(self, image_id: str, what: str) -> None:
        found = self._podman("image", "inspect", "--format", "{{.Os}}/{{.Architecture}}", image_id).strip()
        if found != f"linux/{host_arch()}":
            self._podman("rmi", "--force", image_id)
            raise ImageRejected(f"{what} is an image for {found}; this provider runs linux/{host_arch()}",
                                field="image")

    def resolve(self, image: str) -> str:
        """The image id a job names; refuses what is neither a loaded archive nor an allowed reference."""
        if image.startswith("sha256:"):
            with self._lock:
                found = self._images.get(image)
            if found is None:
                raise ImageRejected(f"no image archive {image[:19]}... is loaded", field="image",
                                    hint="fetch the artifact and load_archive() it first")
            return found
        parse_ref(image)
        return self.pull(image)

    # -- runs -----------------------------------------------------------------------------

    def check_job(self, job: ContainerJob) -> None:
        """Refuse a job this provider will not run, before anything is started."""
        if job.network and not self.config.allow_network:
            raise InputError("this provider does not offer network access to containers", field="network")
        for name in job.devices:
            check_device_name(name)
        for key, _ in job.env:
            if not _ENV_NAME.match(key):
                raise InputError(f"environment name {key!r} is not valid", field="env")
        if any("\x00" in a for a in job.argv):
            raise InputError("a command argument contains a NUL byte", field="argv")

    def run_argv(self, name: str, image_id: str, job: ContainerJob, limits: ContainerLimits, space: Workspace,
                 cgroup: RunCgroup) -> list[str]:
        """The ``podman run`` command line of one run: every limit of the module docstring."""
        uid, gid = self.config.user
        argv = ["run", "--interactive", "--name", name, "--pull", "never", "--log-driver", "none",
                "--network", "none" if not (job.network and self.config.allow_network) else "bridge",
                "--read-only", "--read-only-tmpfs=false", "--no-hosts", "--hostname", "cona",
                "--mount", f"type=bind,src={space.input},dst={INPUT_DIR},ro=true",
                "--mount", f"type=bind,src={space.work},dst={WORK_DIR}", "--workdir", WORK_DIR,
                "--env", f"HOME={WORK_DIR}", "--env", f"TMPDIR={WORK_DIR}",
                "--memory", f"{limits.memory_mib}m", "--memory-swap", f"{limits.memory_mib}m",
                "--cpus", f"{limits.cpus:g}", "--pids-limit", str(limits.pids),
                "--shm-size", f"{min(16, limits.memory_mib // 2)}m",
                "--ulimit", f"nofile={limits.nofile}:{limits.nofile}",
                "--ulimit", f"nproc={limits.nproc}:{limits.nproc}",
                "--cap-drop", "all", "--security-opt", "no-new-privileges", "--user", f"{uid}:{gid}",
                "--cgroupns", "private", "--cgroup-parent", cgroup.parent, "--systemd", "false",
                "--timeout", str(math.ceil(limits.wall_seconds) + 30), "--label", "cona.run=1"]
        for key, value in job.env:
            argv += ["--env", f"{key}={value}"]
        for device in job.devices:
            argv += ["--device", device]
        return self.podman_argv(*argv, image_id, *job.argv)

    def run(self, job: ContainerJob, limits: ContainerLimits = ContainerLimits()) -> ContainerResult:
        """Run one job to its end. Bad jobs raise before anything starts; every started run ends in a
        ``ContainerResult`` and leaves no directory or cgroup behind (the container itself goes with
        the janitor, see ``settle``)."""
        self.check_job(job)
        image_id = self.resolve(job.image)
        run_id = secrets.token_hex(6)
        name, cgroup = f"cona-{run_id}", RunCgroup(self.prefix + run_id)
        space = Workspace(self.storage / "runs", limits.work_mib * MIB, job.inputs, owner=self.config.user)
        if not space.mounted:  # a plain directory would let the container fill the agent's disk
            space.close()
            raise ContainerUnavailable("the agent cannot mount the container's tmpfs work directory",
                                       hint="run the agent as root (rootful podman needs it anyway)")
        try:
            return self._run(name, image_id, job, limits, space, cgroup)
        finally:
            self._trash.put(name)
            space.close()
            cgroup.remove()

    def _run(self, name: str, image_id: str, job: ContainerJob, limits: ContainerLimits, space: Workspace,
             cgroup: RunCgroup) -> ContainerResult:
        argv = self.run_argv(name, image_id, job, limits, space, cgroup)
        started = time.perf_counter()
        with tempfile.TemporaryFile(dir=self.storage / "tmp") as stdin:  # unlinked: only the fd is passed
            stdin.write(job.stdin)
            stdin.flush()
            stdin.seek(0)
            # run from the agent's own storage: conmon drops an ``oom`` marker in its working directory
            # when the kernel kills the container for memory, which must not land in the agent's
            proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, close_fds=True, cwd=self.storage / "tmp")
        out, err, killed_for = self._pump(proc, name, cgroup, limits)
        wall_ms = (time.perf_counter() - started) * 1000
        usage = cgroup.usage()
        status, code, detail = classify(proc.returncode, killed_for, usage.peak_memory_bytes, usage.oom_kills,
                                        limits, bytes(err))
        if status in ("exit", "signal") and space.full():
            status, detail = "disk-limit", f"the scratch is full ({limits.work_mib} MiB): {detail}".rstrip(": ")
        files: tuple[OutputBlob, ...] = ()
        if status != "output":
            collected = space.collect(limits.outputs)
            files = collected.files
            if collected.over_cap:
                status, detail = "output", collected.over_cap
            elif collected.skipped:
                detail = f"{detail}; {collected.skipped}" if detail else collected.skipped
        output = bytes(out[:limits.max_output_bytes])
        log.info("container %s (%s): %s (exit %d) cpu %.3f s peak %d MiB wall %.0f ms", name, image_id[:12], status,
                 code, usage.cpu_seconds, usage.peak_memory_bytes // MIB, wall_ms)
        return ContainerResult(status, code, output, usage.cpu_seconds, usage.peak_memory_bytes, wall_ms, detail,
                               files, bytes(err[-STDERR_TAIL:]))

    def _pump(self, proc: subprocess.Popen, name: str, cgroup: RunCgroup, limits: ContainerLimits
              ) -> tuple[bytearray, bytearray, str | None]:
        """Read stdout (bounded) and stderr (a tail) until podman exits; kill at the deadline or overflow."""
        out, err = bytearray(), bytearray()
        killed_for: str | None = None
        deadline = time.monotonic() + limits.wall_seconds
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        try:
            while sel.get_map():
                now = time.monotonic()
                if killed_for is None and now >= deadline:
                    killed_for = self._kill(name, cgroup, "wall-timeout")
                    deadline = now + KILL_GRACE
                elif killed_for is not None and now >= deadline:
                    break  # podman did not return after the kill: stop waiting for its pipes
                for key, _ in sel.select(timeout=max(0.0, min(deadline - now, 0.5))):
                    chunk = os.read(key.fileobj.fileno(), 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                    elif key.data == "err":
                        err = (err + chunk)[-STDERR_TAIL * 4:]
                    elif len(out) <= limits.max_output_bytes:
                        out += chunk
                if killed_for is None and len(out) > limits.max_output_bytes:
                    killed_for = self._kill(name, cgroup, "output")
                    deadline = time.monotonic() + KILL_GRACE
        finally:
            sel.close()
            proc.stdout.close()
            proc.stderr.close()
        self._reap(proc, name)
        return out, err, killed_for

    def _kill(self, name: str, cgroup: RunCgroup, why: str) -> str:
        log.info("container %s: %s, killing it", name, why)
        if not cgroup.kill():  # not started yet (or gone): ask podman
            subprocess.run(self.podman_argv("kill", "--signal", "KILL", name), capture_output=True, timeout=60)
        return why

    def _reap(self, proc: subprocess.Popen, name: str) -> None:
        try:
            proc.wait(timeout=KILL_GRACE)
        except subprocess.TimeoutExpired:
            log.warning("container %s: podman did not exit; killing its client and removing the container", name)
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            subprocess.run(self.podman_argv("rm", "--force", "--time", "0", name), capture_output=True, timeout=60)


def classify(returncode: int, killed_for: str | None, peak: int, oom_kills: int | None, limits: ContainerLimits,
             stderr: bytes) -> tuple[str, int, str]:
    """(status, exit code, detail) of a finished ``podman run``: its exit code is the container's, or
    128 + the signal that ended it, or 125-127 when podman could not start it."""
    text = stderr.decode("utf-8", "replace")
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")
    if killed_for == "wall-timeout":
        return "wall-timeout", -signal.SIGKILL, f"wall-clock limit of {limits.wall_seconds:g} s reached"
    if killed_for == "output":
        return "output", -signal.SIGKILL, f"stdout over {limits.max_output_bytes} bytes"
    if returncode == 0:
        return "ok", 0, ""
    if returncode in (125, 126, 127) and "Error:" in text:
        return "exec-error", returncode, _last_error(text)
    if returncode == 128 + signal.SIGKILL and (oom_kills or peak >= limits.memory_mib * MIB):
        return "memory-limit", -signal.SIGKILL, f"memory limit of {limits.memory_mib} MiB reached (OOM kill)"
    if returncode > 128:
        sig = returncode - 128
        named = signal.Signals(sig).name if sig in signal.valid_signals() else f"signal {sig}"
        return "signal", -sig, f"killed by {named}"
    return "exit", returncode, last[:200]


def _last_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    return (errors[-1] if errors else lines[-1] if lines else "no message")[:300]
