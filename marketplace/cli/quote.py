"""What the market offers a buyer: ``cona quote``, ``cona providers`` and ``cona topology``.

Reads only, through the market's API (``marketplace.cli.remote``). A requirement is given as
flags (``--device-class``, ``--count``, ``--min-memory-mib``, ...; shared with ``cona order
place``) and normalised by ``marketplace.resources.requirement.Requirement``, which names the
flag at fault. Tables abbreviate addresses; ``--json`` prints the API's documents whole.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import typer
from rich.table import Table

from marketplace.cli.options import JsonOpt
from marketplace.cli.output import emit, eth, out, short
from marketplace.cli.remote import ApiOpt, api_client
from marketplace.errors import ConaError, InputError

# typer options shared by quote and order place
DeviceOpt = typer.Option(..., "--device-class", help="cpu, gpu, npu or tpu")
CountOpt = typer.Option(1, "--count", min=1, help="devices (for cpu: logical CPUs)")
ShareOpt = typer.Option(1000, "--share-milli", min=1, max=1000, help="thousandths of each device")
MemOpt = typer.Option(None, "--min-memory-mib", min=0, help="device memory per device (VRAM), MiB")
SysMemOpt = typer.Option(None, "--min-system-memory-mib", min=0, help="host memory, MiB")
PrecOpt = typer.Option(None, "--precision", help="fp64, fp32, fp16, bf16, int8, ... (with --min-flops)")
FlopsOpt = typer.Option(None, "--min-flops", help="per device, at --precision")
FeatOpt = typer.Option([], "--feature", help="a required feature (repeatable), e.g. avx512")
LatOpt = typer.Option(None, "--max-latency-ms", help="network latency bound from --attachment")
PriceOpt = typer.Option(None, "--max-price", min=0, help="wei per device-hour at most")
DomainOpt = typer.Option(None, "--domain", help="only providers in this network domain")
DurOpt = typer.Option(3600, "--duration", min=1, help="lease length, seconds")
CpuMilliOpt = typer.Option(0, "--cpu-milli", min=0, help="host CPU an accelerator job needs, thousandths")
GpuModelOpt = typer.Option([], "--gpu-model", help="a device model the order accepts (repeatable), e.g. A100; "
                                                    "without it any model")
AttOpt = typer.Option(None, "--attachment", help="the topology node the buyer sits at (for latency)")


def requirement_dict(device_class: str, count: int, share_milli: int, min_memory_mib: Optional[int],
                     min_system_memory_mib: Optional[int], precision: Optional[str], min_flops: Optional[float],
                     feature: list[str], max_latency_ms: Optional[float], max_price: Optional[int],
                     domain: Optional[int], duration: int, cpu_milli: int,
                     gpu_model: Sequence[str] = ()) -> dict[str, Any]:
    """The requirement the flags describe, normalised by ``Requirement`` (which names a bad field)."""
    from marketplace.resources.requirement import Requirement

    raw = {"device_class": device_class, "count": count, "share_milli": share_milli, "duration_s": duration,
           "cpu_milli": cpu_milli, "features": list(feature)}
    if gpu_model:
        raw["models"] = list(gpu_model)
    for k, v in (("min_memory_mib", min_memory_mib), ("min_system_memory_mib", min_system_memory_mib),
                 ("precision", precision), ("min_flops", min_flops), ("max_latency_ms", max_latency_ms),
                 ("max_price", max_price), ("domain", domain)):
        if v is not None:
            raw[k] = v
    try:
        return Requirement.from_dict(raw).to_dict()
    except ConaError as exc:
        f = exc.fields.get("field")
        flag = "gpu-model" if f == "models" else str(f).replace("_", "-")
        raise InputError(f"--{flag}: {exc.message}" if f else exc.message, field=f,
                         hint=exc.hint or (f"check --{flag}" if f else None)) from None


def quote(device_class: str = DeviceOpt, count: int = CountOpt, share_milli: int = ShareOpt,
          min_memory_mib: Optional[int] = MemOpt, min_system_memory_mib: Optional[int] = SysMemOpt,
          precision: Optional[str] = PrecOpt, min_flops: Optional[float] = FlopsOpt, feature: list[str] = FeatOpt,
          max_latency_ms: Optional[float] = LatOpt, max_price: Optional[int] = PriceOpt,
          domain: Optional[int] = DomainOpt, duration: int = DurOpt, cpu_milli: int = CpuMilliOpt,
          gpu_model: list[str] = GpuModelOpt, attachment: Optional[str] = AttOpt, api: Optional[str] = ApiOpt,
          as_json: bool = JsonOpt) -> None:
    """Which providers would serve a requirement: price, latency, score, and why the others are left out."""
    req = requirement_dict(device_class, count, share_milli, min_memory_mib, min_system_memory_mib, precision,
                           min_flops, feature, max_latency_ms, max_price, domain, duration, cpu_milli, gpu_model)
    with api_client(api) as client:
        doc = client.quote(req, attachment)
    if as_json:
        emit(doc, True)
        return
    out.print(_quote_table(doc, count, device_class, duration, attachment))
    fits = sum(bool(p["feasible"]) for p in doc.get("providers", []))
    out.print(f"{fits} provider(s) fit; best (*): {doc.get('best')}")


def _quote_table(doc: dict[str, Any], count: int, device_class: str, duration: int,
                 attachment: Optional[str]) -> Table:
    from marketplace.chain.market import cost

    table = Table(title=f"quote: {count} x {device_class} for {duration} s"
                  + (f" from node {attachment}" if attachment else ""))
    for col in ("provider", "fits", "score", "price / device-h", "cost", "latency ms", "why not"):
        table.add_column(col, no_wrap=col in ("provider",))
    for p in doc.get("providers", []):
        price = p.get("price")
        why = "; ".join(r["message"] for r in p.get("rejections", []))
        table.add_row(short(p["provider"]) + (" *" if p["provider"] == doc.get("best") else ""),
                      "[green]yes[/]" if p["feasible"] else "[red]no[/]",
                      "" if p.get("total") is None else f"{p['total']:.1f}",
                      "" if price is None else eth(price),
                      "" if price is None else eth(cost(count, duration, int(price))),
                      "" if p.get("latency_ms") is None else f"{p['latency_ms']:.2f}", why)
    return table


def providers(api: Optional[str] = ApiOpt, as_json: bool = JsonOpt,
              device_class: Optional[str] = typer.Option(None, "--device-class", help="only those with this class"),
              min_vram_mib: Optional[int] = typer.Option(None, "--min-vram-mib", help="memory per device of that class"),
              domain: Optional[int] = typer.Option(None, "--domain", help="only this network domain (AS)"),
              max_price: Optional[int] = typer.Option(None, "--max-price", help="wei per unit-hour, at most"),
              ) -> None:
    """The providers the engine knows (a signed LSA installed): hardware, node, price, load."""
    with api_client(api) as client:
        items = client.providers(device_class=device_class, min_vram_mib=min_vram_mib, domain=domain,
                                 max_price=max_price)
    if as_json:
        emit(items, True)
        return
    table = Table(title=f"{len(items)} provider(s)")
    for col in ("address", "host", "devices", "node", "domain", "price", "load", "status"):
        table.add_column(col, no_wrap=col == "address")
    for p in items:
        devs = ", ".join(f"{d['count']}x {d['model']}" + (f" {d['memory_mib'] // 1024} GiB" if d.get("memory_mib")
                                                          else "") for d in p.get("devices", []))
        table.add_row(short(p["address"]), str(p.get("hostname", "")), devs, str(p.get("attachment")),
                      str(p.get("domain")), eth(p.get("price") or 0), f"{float(p.get('load') or 0):.2f}",
                      str(p.get("status")))
    out.print(table)


def topology(api: Optional[str] = ApiOpt, as_json: bool = JsonOpt,
             geojson: bool = typer.Option(False, "--geojson", help="print the GeoJSON FeatureCollection")) -> None:
    """The network the market runs on: nodes, links with latency and capacity, where providers attach."""
    with api_client(api) as client:
        doc = client.topology(geojson=geojson)
    if as_json or geojson:
        emit(doc, True)
        return
    attached: dict[str, list[str]] = {}
    for p in doc.get("providers", []):
        attached.setdefault(str(p.get("attachment")), []).append(str(p.get("hostname") or short(p["address"])))
    degree: dict[str, int] = {}
    for link in doc["links"]:
        degree[link["u"]] = degree.get(link["u"], 0) + 1
        degree[link["v"]] = degree.get(link["v"], 0) + 1
    table = Table(title=f"{doc['name']}: {len(doc['nodes'])} nodes, {len(doc['links'])} links, "
                        f"{len(doc.get('providers', []))} providers")
    for col in ("node", "label", "lat", "lon", "links", "providers"):
        table.add_column(col)
    for n in doc["nodes"]:
        table.add_row(n["id"], n.get("label") or "", "" if n.get("lat") is None else f"{n['lat']:.2f}",
                      "" if n.get("lon") is None else f"{n['lon']:.2f}", str(degree.get(n["id"], 0)),
                      ", ".join(attached.get(n["id"], [])))
    out.print(table)
