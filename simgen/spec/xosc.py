"""OpenSCENARIO 1.0-1.3 (.xosc) front end: a file becomes the same raw scenario mapping the YAML loader reads.

The file is first validated against ASAM's own XSD for its FileHeader revMajor/revMinor (shipped in the
``asam-qc-openscenarioxml`` wheel) with ``xmlschema``; a schema violation is one line naming the file and the
element path.  The validated tree is then walked element by element.  Every element is either mapped onto
simgen's spec (see docs/openscenario.md for the table) or refused with an :class:`InputError` whose key is the
element's path (``Storyboard/Story[1]/Act[1]/...``): nothing is dropped silently.

Parameters: ``ParameterDeclaration`` values become simgen ``parameters`` (so ``--set parameters.NAME=V`` is
checked against them and overrides them); ``$name`` references and ``${expr}`` expressions are resolved with
those values when the file is converted (catalog entries, entity names and numbers alike).

Conditions and speed actions run through the trigger ``xosc_condition`` and the behaviour ``xosc_speed``
(:mod:`simgen.spec.xosc_runtime`), registered with simgen's behaviour/trigger registry.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from simgen.errors import InputError

SCHEMA_VERSIONS = {(1, 0): "1.0.0", (1, 1): "1.1.1", (1, 2): "1.2.0", (1, 3): "1.3.0"}
_SCHEMAS: dict[str, Any] = {}

VEHICLE_KIND = {"car": "car", "van": "van", "truck": "truck", "trailer": "truck", "semitrailer": "truck",
                "bus": "bus", "motorbike": "motorcycle", "bicycle": "cyclist", "train": "bus", "tram": "bus"}
PEDESTRIAN_KIND = {"pedestrian": "pedestrian", "wheelchair": "pedestrian", "animal": "deer"}
MISC_KIND = {"obstacle": "debris", "none": "debris"}
WALKERS = ("pedestrian", "child", "deer", "dog", "animal", "debris", "ball")
RULES = ("greaterThan", "lessThan", "equalTo", "greaterOrEqual", "lessOrEqual", "notEqualTo")


def schema_root() -> Path:
    """ASAM's OpenSCENARIO XSD folder: from the installed ``asam-qc-openscenarioxml`` package (located, not
    imported: it pins numpy < 2, so it is installed with ``--no-deps``), or from the unpacked wheel in simgen's
    cache (``$SIMGEN_ASAM_CACHE`` or ``~/.cache/simgen/asam``, where the test suite puts it)."""
    import importlib.util
    import os

    spec = importlib.util.find_spec("qc_openscenario")
    if spec is not None and spec.submodule_search_locations:
        d = Path(list(spec.submodule_search_locations)[0]) / "schema"
        if d.is_dir():
            return d
    base = os.environ.get("SIMGEN_ASAM_CACHE")
    cache = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "simgen" / "asam"
    d = cache / "asam-qc-openscenarioxml-1.0.0" / "qc_openscenario" / "schema"
    if d.is_dir():
        return d
    raise InputError("reading OpenSCENARIO needs ASAM's XSDs from asam-qc-openscenarioxml (a simgen dependency): pip install asam-qc-openscenarioxml==1.0.0")


def _schema(version: str):
    if version not in _SCHEMAS:
        import xmlschema

        xsd = schema_root() / version / "OpenSCENARIO.xsd"
        _SCHEMAS[version] = xmlschema.XMLSchema(str(xsd))
    return _SCHEMAS[version]


def _parse(path: Path, what: str = "OpenSCENARIO file") -> ET.Element:
    """Parse and schema-validate one .xosc file (scenario, catalog or distribution)."""
    if not path.is_file():
        raise InputError(f"{what} not found", file=str(path))
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise InputError(f"not well-formed XML: {e}", file=str(path)) from None
    if root.tag != "OpenSCENARIO":
        raise InputError(f"the root element is <{root.tag}>; allowed: <OpenSCENARIO>", file=str(path), key=root.tag)
    hdr = root.find("FileHeader")
    try:
        rev = (int(hdr.get("revMajor")), int(hdr.get("revMinor")))
    except (AttributeError, TypeError, ValueError):
        raise InputError("FileHeader needs integer revMajor and revMinor", file=str(path), key="FileHeader") from None
    if rev not in SCHEMA_VERSIONS:
        raise InputError(f"OpenSCENARIO {rev[0]}.{rev[1]} is not supported; allowed: 1.0 to 1.3", file=str(path),
                         key="FileHeader")
    err = next(iter(_schema(SCHEMA_VERSIONS[rev]).iter_errors(str(path))), None)
    if err is not None:
        where = (err.path or "").lstrip("/").removeprefix("OpenSCENARIO/") or "OpenSCENARIO"
        reason = (err.reason or str(err.message)).splitlines()[0]
        raise InputError(f"violates the OpenSCENARIO {rev[0]}.{rev[1]} schema: {reason}", file=str(path), key=where)
    return root


class _Conv:
    def __init__(self, path: Path, overrides: dict[str, Any]):
        self.path = path
        self.file = str(path)
        self.root = _parse(path)
        self.params: dict[str, Any] = {}
        self.declared: dict[str, Any] = {}
        self.overrides = overrides
        self.names: dict[str, str] = {}  # OpenSCENARIO entity name -> simgen actor id
        self.actor: dict[str, dict] = {}  # simgen id -> raw actor mapping
        self.lanepos: dict[str, tuple] = {}  # simgen id -> (road, lane_id) of its init LanePosition
        self.kinds: dict[str, str] = {}
        self.event_names: dict[str, str] = {}  # OpenSCENARIO event name -> simgen event name
        self.action_events: dict[str, str] = {}  # OpenSCENARIO action name -> the simgen event playing it
        self.event_end: dict[str, dict] = {}  # simgen event name -> how its action ends
        self.maneuver_events: dict[str, list[str]] = {}
        self.controllers: dict[str, str] = {}  # simgen id -> its ObjectController's name
        self.acts: dict[str, list] = {}  # act name -> its start-trigger groups
        self.act_events: dict[str, list] = {}  # act name -> its simgen events
        self.pose: dict[str, tuple] = {}  # simgen id -> (x, y, heading) of its initial reference point
        self.roadpos: dict[str, tuple] = {}  # simgen id -> (road, s, None, lane id) of its initial lane position
        self.routes: dict = {}  # route name -> planned route (simgen lanes and turns)
        self.route_of: dict[str, dict] = {}  # simgen id -> its assigned route
        self.geo = None
        self.weather: dict = {}  # EnvironmentAction -> simgen weather keys
        self.env_notes: list[str] = []
        self.time_of_day: float | None = None
        self._n = 0

    # ------------------------------------------------------------------ helpers
    def err(self, where: str, msg: str) -> InputError:
        return InputError(msg, file=self.file, key=where)

    def unsupported(self, el: ET.Element, where: str) -> InputError:
        return self.err(where, f"<{el.tag}> is not supported by simgen's OpenSCENARIO import (see docs/openscenario.md)")

    @staticmethod
    def kids(el: ET.Element, where: str):
        """Child elements with their paths (``Tag[i]`` counts same-tag siblings from 1)."""
        count: dict[str, int] = {}
        for c in el:
            if not isinstance(c.tag, str):
                continue
            count[c.tag] = count.get(c.tag, 0) + 1
            yield c, f"{where}/{c.tag}[{count[c.tag]}]" if where else f"{c.tag}[{count[c.tag]}]"

    def only(self, el: ET.Element, where: str) -> tuple[ET.Element, str]:
        """The single child of a choice element (e.g. PrivateAction → LongitudinalAction)."""
        kids = list(self.kids(el, where))
        if len(kids) != 1:
            raise self.err(where, f"expected one child element, got {len(kids)}")
        c, p = kids[0]
        return c, re.sub(r"\[1\]$", "", p)

    def value(self, text: str | None, where: str, params: dict | None = None):
        """Resolve ``$name`` and ``${expr}`` against the parameters in scope."""
        params = self.params if params is None else params
        if text is None:
            return None
        t = text.strip()
        if t.startswith("${") and t.endswith("}"):
            from simgen.spec.params import evaluate

            expr = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", r"\1", t[2:-1])
            expr = re.sub(r"\bnot\b", " not ", expr)
            return evaluate(expr, {k: _num_or(v) for k, v in params.items()}, file=self.file, key=where)
        if t.startswith("$"):
            name = t[1:]
            if name not in params:
                raise self.err(where, f"unknown parameter {t!r}; declared: {', '.join(sorted(params)) or 'none'}")
            return params[name]
        return text

    def num(self, el: ET.Element, attr: str, where: str, default=None, params=None) -> float:
        v = self.value(el.get(attr), f"{where}@{attr}", params)
        if v is None:
            if default is None:
                raise self.err(f"{where}@{attr}", "missing")
            return default
        try:
            return float(v)
        except (TypeError, ValueError):
            raise self.err(f"{where}@{attr}", f"got {v!r}; allowed: a number") from None

    def text(self, el: ET.Element, attr: str, where: str, default=None, params=None) -> str | None:
        v = self.value(el.get(attr), f"{where}@{attr}", params)
        return default if v is None else str(v)

    def declare(self, el: ET.Element | None, where: str, into: dict, overrides: dict | None = None) -> None:
        if el is None:
            return
        for p, pw in self.kids(el, where):
            if p.tag != "ParameterDeclaration":
                raise self.unsupported(p, pw)
            if list(p):
                raise self.err(pw, "parameter constraints (ConstraintGroup) are not supported")
            name = (p.get("name") or "").lstrip("$")  # some files declare name="$x"
            raw = overrides[name] if overrides and name in overrides else self.value(p.get("value"), f"{pw}@value", into)
            typ = p.get("parameterType")
            into[name] = _typed(raw, typ, self.err(f"{pw}@value", f"got {raw!r}; allowed: a {typ}"))

    def ref(self, name: str, where: str) -> str:
        if name not in self.names:
            raise self.err(where, f"unknown entity {name!r}; entities: {', '.join(self.names)}")
        return self.names[name]

    # ------------------------------------------------------------------ catalogs
    def catalog_entry(self, ref: ET.Element, where: str) -> tuple[ET.Element, dict]:
        cat = self.text(ref, "catalogName", where)
        entry = self.text(ref, "entryName", where)
        kind = None
        locs = self.root.find("CatalogLocations")
        if locs is None:
            raise self.err(where, "a CatalogReference needs CatalogLocations")
        for loc in locs:
            d = loc.find("Directory")
            if d is None:
                continue
            folder = (self.path.parent / self.text(d, "path", "CatalogLocations")).resolve()
            for f in sorted(folder.glob("*.xosc")) if folder.is_dir() else ():
                croot = _parse(f, "catalog file")
                c = croot.find("Catalog")
                if c is None or c.get("name") != cat:
                    continue
                for e in c:
                    if e.get("name") == entry:
                        kind = e
                        break
                if kind is not None:
                    break
            if kind is not None:
                break
        if kind is None:
            raise self.err(where, f"catalog entry {cat}/{entry} not found in the CatalogLocations directories")
        params: dict = {}
        assigned = {}
        pa = ref.find("ParameterAssignments")
        if pa is not None:
            for a, aw in self.kids(pa, f"{where}/ParameterAssignments"):
                # esmini's files write parameterRef="$Name"; the schema allows any string, so the "$" is dropped
                assigned[(a.get("parameterRef") or "").lstrip("$")] = self.value(a.get("value"), f"{aw}@value")
        self.declare(kind.find("ParameterDeclarations"), f"{cat}/{entry}/ParameterDeclarations", params, assigned)
        return kind, params

    # ------------------------------------------------------------------ entities
    def entities(self) -> None:
        ents = self.root.find("Entities")
        objs = list(self.kids(ents, "Entities"))
        for o, w in objs:
            if o.tag != "ScenarioObject":
                raise self.unsupported(o, w)
        names = [o.get("name") for o, _ in objs]
        ego = next((n for n in names if n.lower() in ("ego", "hero", "egovehicle")), names[0] if names else None)
        if ego is None:
            raise self.err("Entities", "no ScenarioObject")
        used = {"ego"}
        for o, w in objs:
            n = o.get("name")
            sid = "ego" if n == ego else _ident(n, used)
            used.add(sid)
            self.names[n] = sid
            body, bw = None, None
            params = self.params
            for c, cw in self.kids(o, w):
                if c.tag == "CatalogReference":
                    body, params = self.catalog_entry(c, cw)
                    params = {**self.params, **params}
                    bw = cw
                elif c.tag in ("Vehicle", "Pedestrian", "MiscObject"):
                    body, bw = c, cw
                elif c.tag == "ObjectController":
                    if len([k for k in c if isinstance(k.tag, str)]):  # an empty one: the default controller
                        self.controllers[sid] = self.object_controller(c, cw)
                else:
                    raise self.unsupported(c, cw)
            if body is None:
                raise self.err(w, "needs a Vehicle, Pedestrian, MiscObject or CatalogReference")
            kind, dims, cx = self.entity_kind(body, bw, params, sid == "ego")
            a = {"id": sid, "kind": kind, "dims": dims, "place": None, "speed_mps": 0.0, "events": []}
            a["_cx"] = cx
            self.actor[sid] = a
            self.kinds[n] = f"{body.tag} {body.get('name')} ({_category(body)}) -> {kind}"

    def entity_kind(self, body: ET.Element, where: str, params: dict, is_ego: bool):
        if body.tag == "Vehicle":
            cat = self.text(body, "vehicleCategory", where, params=params)
            kind = VEHICLE_KIND.get(cat)
        elif body.tag == "Pedestrian":
            cat = self.text(body, "pedestrianCategory", where, params=params) or "pedestrian"
            kind = PEDESTRIAN_KIND.get(cat)
        elif body.tag == "MiscObject":
            cat = self.text(body, "miscObjectCategory", where, params=params)
            kind = MISC_KIND.get(cat)
        else:
            raise self.unsupported(body, where)
        if kind is None:
            raise self.err(f"{where}", f"category {cat!r} has no simgen actor kind")
        bb = body.find("BoundingBox")
        d = bb.find("Dimensions")
        dims = {"length_m": self.num(d, "length", where, params=params),
                "width_m": self.num(d, "width", where, params=params),
                "height_m": self.num(d, "height", where, params=params)}
        cx = self.num(bb.find("Center"), "x", where, params=params)
        if is_ego and kind not in ("car", "van", "truck", "bus"):
            raise self.err(where, f"the ego is a {kind}; simgen's ego must be a car, van, truck or bus")
        return kind, dims, cx

    def object_controller(self, c: ET.Element, where: str) -> str:
        """A controller is a driver model.  It is inactive until an ActivateControllerAction switches it on
        (then the actor gets simgen's attentive IDM driver); its name is recorded in the description."""
        body, bw = self.only(c, where)
        if body.tag == "CatalogReference":
            body, _ = self.catalog_entry(body, bw)
        if body.tag != "Controller":
            raise self.unsupported(body, bw)
        props = body.find("Properties")
        for pr in props if props is not None else ():
            if pr.get("name") == "esminiController" and pr.get("value") == "InteractiveController":
                return body.get("name") + " (a human at the keyboard: played as keeping lane and speed)"
        return body.get("name")

    # ------------------------------------------------------------------ positions
    def orientation(self, p: ET.Element, where: str, base: float) -> float:
        """Heading (rad) of a position's ``Orientation``: relative to ``base`` (the lane's or the reference's
        heading) or absolute."""
        o = p.find("Orientation")
        if o is None:
            return base
        h = self.num(o, "h", f"{where}/Orientation", 0.0)
        return h if o.get("type", "relative") == "absolute" else base + h

    def route_ref(self, rr: ET.Element, where: str) -> dict:
        """A RouteRef / AssignRouteAction child: an inline Route or a catalog reference → the planned route."""
        body, bw = self.only(rr, where)
        if body.tag == "CatalogReference":
            saved = self.params
            body, params = self.catalog_entry(body, bw)
            self.params = {**self.params, **params}
            try:
                return self.route_plan(body, bw)
            finally:
                self.params = saved
        if body.tag != "Route":
            raise self.unsupported(body, bw)
        return self.route_plan(body, bw)

    def route_plan(self, r: ET.Element, where: str) -> dict:
        key = (r.get("name"), where if r.get("name") is None else "")
        if key in self.routes:
            return self.routes[key]
        wps = []
        for w, ww in self.kids(r, where):
            if w.tag == "ParameterDeclarations":
                continue
            if w.tag != "Waypoint":
                raise self.unsupported(w, ww)
            lp, lw = self.only(w.find("Position"), f"{ww}/Position")
            if lp.tag != "LanePosition":
                raise self.err(lw, "a route waypoint must be a LanePosition")
            wps.append((int(self.num(lp, "roadId", lw)), int(self.num(lp, "laneId", lw)), self.num(lp, "s", lw), lw))
        if len(wps) < 2:
            raise self.err(where, "a route needs at least two waypoints")
        if r.get("closed") in ("true", "1"):
            raise self.err(f"{where}@closed", "closed routes are not supported")
        lanes = self.geo.route(wps, where)
        plan = {"lanes": lanes, "start_arc": self.geo.lane_at(*wps[0])[1], "where": where}
        self.routes[key] = plan
        return plan

    def point(self, el: ET.Element, where: str, sid: str | None = None) -> tuple[float, float, float, dict | None]:
        """A Position as the world (x, y) of its reference point, a heading (rad), and, for lane and route
        positions, the OpenDRIVE lane it is on ``{road, lane_id, s_m, offset_m}`` (else None)."""
        p, pw = self.only(el, where)
        if p.tag == "WorldPosition":
            h = self.num(p, "h", pw, 0.0)
            return self.num(p, "x", pw), self.num(p, "y", pw), h, None
        if p.tag == "LanePosition":
            road, lane = int(self.num(p, "roadId", pw)), int(self.num(p, "laneId", pw))
            s, off = self.num(p, "s", pw), self.num(p, "offset", pw, 0.0)
            x, y, h = self.geo.lane_point(road, lane, s, off, pw)
            return x, y, self.orientation(p, pw, h), {"road": road, "lane_id": lane, "s_m": s, "offset_m": off}
        if p.tag == "RoadPosition":
            x, y, h = self.geo.road_point(int(self.num(p, "roadId", pw)), self.num(p, "s", pw), self.num(p, "t", pw), pw)
            return x, y, self.orientation(p, pw, h), None
        if p.tag in ("RelativeObjectPosition", "RelativeWorldPosition"):
            ref = self.ref(self.text(p, "entityRef", pw), pw)
            if ref not in self.pose:
                raise self.err(pw, f"entity {ref!r} must be placed before a position relative to it")
            rx, ry, rh = self.pose[ref]
            dx, dy = self.num(p, "dx", pw), self.num(p, "dy", pw)
            if p.tag == "RelativeObjectPosition":  # in the reference's own frame (x forward, y left)
                dx, dy = dx * math.cos(rh) - dy * math.sin(rh), dx * math.sin(rh) + dy * math.cos(rh)
            return rx + dx, ry + dy, self.orientation(p, pw, rh), None
        if p.tag == "RelativeRoadPosition":
            ref = self.ref(self.text(p, "entityRef", pw), pw)
            if ref not in self.roadpos:
                raise self.err(pw, f"entity {ref!r} must be placed on a lane or road position before a position "
                                   "relative to its road coordinates")
            road, s_ref, _, lane_ref = self.roadpos[ref]
            t_ref = self.geo.t_of(road, s_ref, *self.pose[ref][:2], pw)
            s_new, t_new = s_ref + self.num(p, "ds", pw), t_ref + self.num(p, "dt", pw)
            x, y, h = self.geo.road_point(road, s_new, t_new, pw)
            hl = h if (lane_ref or -1) < 0 else h + math.pi  # "relative": to the reference's lane direction
            return x, y, self.orientation(p, pw, hl), None
        if p.tag == "RoutePosition":
            plan = self.route_ref(p.find("RouteRef"), f"{pw}/RouteRef")
            irp, iw = self.only(p.find("InRoutePosition"), f"{pw}/InRoutePosition")
            if irp.tag != "FromLaneCoordinates":
                raise self.err(iw, f"<{irp.tag}> is not supported; allowed: FromLaneCoordinates")
            ln, arc = self.geo.route_point(plan["lanes"], plan["start_arc"], self.num(irp, "pathS", iw), iw)
            road, _, lane = ln.odr
            if int(self.num(irp, "laneId", iw)) != lane:
                raise self.err(f"{iw}@laneId", f"the route is on lane {lane} of road {road} there; only a position on "
                                               "the route's own lane is supported")
            s = self.geo.odr_s(ln, arc)
            off = self.num(irp, "laneOffset", iw, 0.0)
            x, y, h = self.geo.lane_point(road, lane, s, off, iw)
            return x, y, self.orientation(p, pw, h), {"road": road, "lane_id": lane, "s_m": s, "offset_m": off}
        if p.tag == "TrajectoryPosition":
            pts, _ = self.trajectory_shape(p, pw)
            seg = np.diff(np.asarray(pts, float), axis=0)
            cum = np.concatenate([[0.0], np.cumsum(np.hypot(*seg.T))])
            s_on = min(max(self.num(p, "s", pw), 0.0), float(cum[-1]))
            k = min(int(np.searchsorted(cum, s_on, side="right")) - 1, len(seg) - 1)
            u = (s_on - cum[k]) / max(cum[k + 1] - cum[k], 1e-9)
            x, y = np.asarray(pts[k], float) + u * seg[k]
            h = math.atan2(seg[k][1], seg[k][0])
            return float(x), float(y), self.orientation(p, pw, h), None
        if p.tag == "RelativeLanePosition" and sid is None:
            raise self.err(pw, "a RelativeLanePosition is only supported in a TeleportAction")
        raise self.unsupported(p, pw)

    def _relative_ref(self, el: ET.Element) -> str | None:
        """The simgen id of the entity a Position is relative to (None: absolute)."""
        kids = [c for c in el if isinstance(c.tag, str)] if el is not None else []
        if len(kids) == 1 and kids[0].tag.startswith("Relative") and kids[0].get("entityRef") is not None:
            name = self.value(kids[0].get("entityRef"), "Position")
            return self.names.get(name, name)
        return None

    def position(self, el: ET.Element, where: str, sid: str) -> dict:
        """A TeleportAction's Position → ``place:`` (OpenSCENARIO's reference point is the rear axle, simgen's the
        box centre: the place is moved ``Center.x`` forward)."""
        p, pw = self.only(el, where)
        cx = self.actor[sid]["_cx"]
        walker = self.actor[sid]["kind"] in WALKERS
        if p.tag == "RelativeLanePosition" and self.ref(self.text(p, "entityRef", pw), pw) in self.roadpos:
            # on the reference's road: its lane + dLane (lane ids skip 0), its s + ds
            ref = self.ref(self.text(p, "entityRef", pw), pw)
            road, s_ref, _, lane_ref = self.roadpos[ref]
            if p.get("ds") is None:
                raise self.err(pw, "RelativeLanePosition with dsLane is not supported; give ds")
            lane = _lane_step(lane_ref, int(self.num(p, "dLane", pw)))
            lp = ET.Element("LanePosition", roadId=str(road), laneId=str(lane), s=repr(s_ref + self.num(p, "ds", pw)),
                            offset=repr(self.num(p, "offset", pw, 0.0)))
            for o in p.findall("Orientation"):
                lp.append(o)
            holder = ET.Element("Position")
            holder.append(lp)
            return self.position(holder, where, sid)
        if p.tag == "RelativeLanePosition":
            ref = self.ref(self.text(p, "entityRef", pw), pw)
            if p.get("ds") is None:
                raise self.err(pw, "RelativeLanePosition with dsLane is not supported; give ds")
            if ref in self.lanepos and int(self.num(p, "dLane", pw)) == 0:
                self.lanepos[sid] = self.lanepos[ref]
            if ref in self.pose:  # approximately (along the reference's heading), for later relative positions
                rx, ry, rh = self.pose[ref]
                ds = self.num(p, "ds", pw)
                self.pose[sid] = (rx + ds * math.cos(rh), ry + ds * math.sin(rh), rh)
            return {"relative_to": ref, "ahead_m": self.num(p, "ds", pw) + cx - self.actor[ref]["_cx"],
                    "lane_offset": int(self.num(p, "dLane", pw)), "lateral_m": self.num(p, "offset", pw, 0.0)}
        x, y, h, lane = self.point(el, where, sid)
        self.pose[sid] = (x, y, h)
        if lane is not None:
            self.roadpos[sid] = (lane["road"], lane["s_m"], None, lane["lane_id"])
        elif not walker:  # a world/road position: the OpenDRIVE lane under it, for lane changes
            hit = self.geo.map.lane_at(np.array([[x, y]]))[0]
            ln = self.geo.map.lanes[hit] if hit is not None else None
            if ln is not None and ln.odr is not None:
                self.lanepos[sid] = (ln.odr[0], ln.odr[2])
                arc = float(ln.centre.project(np.array([x, y]))[0])
                self.roadpos[sid] = (ln.odr[0], self.geo.odr_s(ln, arc), None, ln.odr[2])
        if lane is not None and not walker:
            road, lid = lane["road"], lane["lane_id"]
            self.lanepos[sid] = (road, lid)
            o = p.find("Orientation")
            rel = 0.0
            if o is not None:
                if o.get("type", "relative") != "relative":
                    raise self.err(f"{pw}/Orientation", "only relative orientation on a lane position is supported")
                rel = self.num(o, "h", f"{pw}/Orientation", 0.0)
            # the box centre is cx ahead along the actor's heading: the lane's direction (+s for negative lane
            # ids), turned by the relative orientation
            along = (1.0 if lid < 0 else -1.0) * math.cos(rel)
            place = dict(lane, s_m=lane["s_m"] + cx * along)
            if o is not None:
                place["yaw_deg"] = math.degrees(rel)
            return place
        return {"x": x + cx * math.cos(h), "y": y + cx * math.sin(h), "yaw_deg": math.degrees(h)}

    # ------------------------------------------------------------------ init
    def init(self, sb: ET.Element) -> None:
        init = sb.find("Init")
        acts = init.find("Actions")
        teleports = []
        for c, w in self.kids(acts, "Storyboard/Init/Actions"):
            if c.tag == "GlobalAction":
                g, gw = self.only(c, w)
                if g.tag != "EnvironmentAction":
                    raise self.unsupported(g, gw)
                self.environment(g, gw)
                continue
            if c.tag != "Private":
                raise self.unsupported(c, w)  # UserDefinedAction
            sid = self.ref(self.text(c, "entityRef", w), w)
            a = self.actor[sid]
            for pa, pw in self.kids(c, w):
                act, aw = self.only(pa, pw)
                if act.tag == "TeleportAction":
                    teleports.append((act.find("Position"), f"{aw}/Position", sid))
                elif act.tag == "LongitudinalAction":
                    sp, sw = self.only(act, aw)
                    if sp.tag != "SpeedAction":
                        raise self.unsupported(sp, sw)
                    tgt, tw = self.only(sp.find("SpeedActionTarget"), f"{sw}/SpeedActionTarget")
                    if tgt.tag != "AbsoluteTargetSpeed":
                        raise self.err(tw, "an initial speed must be an AbsoluteTargetSpeed")
                    a["speed_mps"] = self.num(tgt, "value", tw)
                elif act.tag in ("ActivateControllerAction", "ControllerAction"):
                    a["_controller_on"] = self.private_action(pa, pw, sid, "init")
                elif act.tag == "RoutingAction":
                    self.routing(act, aw, sid, init=True)
                else:
                    raise self.unsupported(act, aw)
        # teleports, each once the entity it is relative to is placed (OpenSCENARIO does not order them)
        while teleports:
            ready = [t for t in teleports if self._relative_ref(t[0]) in (None, *self.pose)]
            if not ready:
                el, where, sid = teleports[0]
                raise self.err(where, f"the position of {sid!r} is relative to an entity that is never placed, or "
                                      "the positions refer to each other")
            for t in ready:
                teleports.remove(t)
                self.actor[t[2]]["place"] = self.position(*t)
        for sid, a in self.actor.items():
            if a["place"] is None:
                raise self.err("Storyboard/Init", f"entity {sid!r} has no TeleportAction (no start position)")

    def global_action(self, ga: ET.Element, where: str) -> dict:
        """A GlobalAction in an event: TrafficSignalStateAction.  It is played by the event's trigger (which sets
        the light's state when it holds, and records the event as fired), so the owner's behaviour is untouched."""
        ia, iw = self.only(ga, where)
        if ia.tag != "InfrastructureAction":
            raise self.unsupported(ia, iw)
        ts, tw = self.only(ia, iw)
        if ts.tag != "TrafficSignalAction":
            raise self.unsupported(ts, tw)
        st, sw = self.only(ts, tw)
        if st.tag != "TrafficSignalStateAction":
            raise self.unsupported(st, sw)
        name = self.text(st, "name", sw)
        lid = f"tl_{name}"
        lights = {tl.id for tl in self.geo.map.traffic_lights}
        if lid not in lights:
            raise self.err(f"{sw}@name", f"no traffic signal {name!r} with lamps in the map; signals: "
                                         + (", ".join(sorted(x[3:] for x in lights)) or "none"))
        return {"_global": {"light": lid, "state": _light_state(self.text(st, "state", sw), self.err, f"{sw}@state")}}

    def environment(self, el: ET.Element, where: str) -> None:
        """EnvironmentAction (Init) → ``weather:`` and ``time_of_day_h``.  Quantities simgen does not model are
        listed in the description (nothing is dropped silently); snow is refused."""
        env, ew = self.only(el, where)
        if env.tag == "CatalogReference":
            env, params = self.catalog_entry(env, ew)
            saved, self.params = self.params, {**self.params, **params}
        else:
            saved = self.params
        try:
            self._environment(env, ew)
        finally:
            self.params = saved

    def _environment(self, env: ET.Element, where: str) -> None:
        w, notes = self.weather, self.env_notes
        sun = env.find("Weather/Sun")
        tod = env.find("TimeOfDay")
        if tod is not None:
            if tod.get("animation") in ("true", "1"):
                notes.append("TimeOfDay animation (the sun stays where it starts)")
            m = re.search(r"T(\d\d):(\d\d):(\d\d(?:\.\d+)?)", self.text(tod, "dateTime", f"{where}/TimeOfDay") or "")
            if m is None:
                raise self.err(f"{where}/TimeOfDay@dateTime", "expected an ISO 8601 date and time")
            if sun is None:  # the sun from the local time of day (simgen's time_of_day_h)
                self.time_of_day = int(m[1]) + int(m[2]) / 60 + float(m[3]) / 3600
        wx = env.find("Weather")
        if wx is not None:
            ww = f"{where}/Weather"
            okta = wx.get("fractionalCloudCover")
            if okta is not None:
                n = ("zeroOktas", "oneOktas", "twoOktas", "threeOktas", "fourOktas", "fiveOktas", "sixOktas",
                     "sevenOktas", "eightOktas", "nineOktas").index(okta)
                w["cloudiness"] = min(100.0, n / 8 * 100)
            cs = wx.get("cloudState")  # OpenSCENARIO 1.0
            if cs is not None:
                w["cloudiness"] = {"free": 0.0, "cloudy": 50.0, "overcast": 90.0, "rainy": 80.0, "skyOff": 0.0}[cs]
            for attr in ("temperature", "atmosphericPressure"):
                if wx.get(attr) is not None:
                    notes.append(f"Weather@{attr}")
            if sun is not None:
                sw = f"{ww}/Sun"
                elev = sun.get("elevation")
                if elev is not None:
                    w["sun_altitude_angle"] = max(-90.0, min(90.0, math.degrees(self.num(sun, "elevation", sw))))
                az = sun.get("azimuth")
                if az is not None:
                    w["sun_azimuth_angle"] = math.degrees(self.num(sun, "azimuth", sw)) % 360.0
                if sun.get("illuminance") is not None or sun.get("intensity") is not None:
                    notes.append("Sun illuminance")
            fog = wx.find("Fog")
            if fog is not None:
                # simgen's fog: extinction 0.06/m x (fog_density/100)^1.5, visibility (MOR) = ln 20 / extinction
                vr = self.num(fog, "visualRange", f"{ww}/Fog")
                if vr <= 0:
                    raise self.err(f"{ww}/Fog@visualRange", "allowed: > 0")
                w["fog_density"] = float(min(100.0, 100.0 * (math.log(20) / vr / 0.06) ** (2 / 3)))
            pr = wx.find("Precipitation")
            if pr is not None:
                pw = f"{ww}/Precipitation"
                typ = pr.get("precipitationType") or pr.get("type")
                if typ == "snow":
                    raise self.err(f"{pw}@precipitationType", "snow is not supported (simgen renders rain only)")
                mmh = self.num(pr, "precipitationIntensity", pw, None) if pr.get("precipitationIntensity") else \
                    self.num(pr, "intensity", pw, 0.0) * 20.0  # 1.0: intensity 0..1
                v = 0.0 if typ == "dry" else min(100.0, mmh / 20.0 * 100.0)  # 20 mm/h (heavy rain) = 100
                w["precipitation"] = v
                w["wetness"] = v
                w["precipitation_deposits"] = v / 2
            wind = wx.find("Wind")
            if wind is not None:
                w["wind_intensity"] = min(100.0, self.num(wind, "speed", f"{ww}/Wind") / 20.0 * 100.0)  # 20 m/s = 100
        rc = env.find("RoadCondition")
        if rc is not None:
            notes.append("RoadCondition (friction is not modelled)")
            if rc.find("Wetness") is not None or rc.get("wetness") is not None:
                w["wetness"] = max(w.get("wetness", 0.0), 50.0)

    def routing(self, el, where, sid, init=False, ev: str | None = None):
        """RoutingAction: AssignRouteAction → the turns of the actor's ``lane_follow`` through the junctions on the
        route; FollowTrajectoryAction → ``xosc_trajectory`` (in events)."""
        act, aw = self.only(el, where)
        if act.tag == "AssignRouteAction":
            plan = self.route_ref(act, aw)
            self.route_of[sid] = plan
            if init:
                return None
            return {"type": "lane_follow", "obstacles": "none", "turns": self.turns(sid, aw)}
        if act.tag == "FollowTrajectoryAction" and not init:
            return self.trajectory(act, aw, sid, ev)
        raise self.unsupported(act, aw)

    def turns(self, sid: str, where: str) -> list[str]:
        """The turns ``sid`` takes at the junctions of its assigned route, from the lane it starts on."""
        plan = self.route_of[sid]
        place = self.actor[sid]["place"]
        if place is None or "road" not in place:
            raise self.err(where, "an actor with a route must start on a LanePosition or RoutePosition")
        start, _ = self.geo.lane_at(place["road"], place["lane_id"], place["s_m"], where)
        ids = [lid for lid, _ in plan["lanes"]]
        if start.id not in ids:
            raise self.err(where, f"the actor starts on lane {place['lane_id']} of road {place['road']}, which is not on "
                                  "its route")
        turns = [t for _, t in plan["lanes"][ids.index(start.id):] if t is not None]
        bad = [t for t in turns if t not in ("straight", "left", "right")]
        if bad:
            raise self.err(where, f"the route needs a {bad[0]!r} at a junction; simgen's drivers turn straight, left "
                                  "or right")
        return turns

    # ------------------------------------------------------------------ conditions
    def condition(self, c: ET.Element, where: str) -> dict:
        edge = c.get("conditionEdge")
        out = {"edge": edge, "delay": self.num(c, "delay", where, 0.0)}
        kind, kw = self.only(c, where)
        if kind.tag == "ByValueCondition":
            v, vw = self.only(kind, kw)
            if v.tag == "SimulationTimeCondition":
                out.update(type="time", rule=v.get("rule"), value=self.num(v, "value", vw))
            elif v.tag == "StoryboardElementStateCondition":
                typ, ref, state = v.get("storyboardElementType"), self.text(v, "storyboardElementRef", vw), v.get("state")
                starts = state in ("startTransition", "runningState")
                if typ == "act" and starts and ref in self.acts:
                    out.update(type="latched", groups=self.acts[ref])
                elif typ == "act" and state in ("endTransition", "completeState") and ref in self.act_events:
                    out.update(type="events_ended", events=self.act_events[ref])  # every event of the act ended
                elif typ in ("event", "action") and ref in (self.event_names if typ == "event" else self.action_events):
                    ev = (self.event_names if typ == "event" else self.action_events)[ref]
                    out.update(type="event_started" if starts else "event_ended", event=ev)
                    if state not in ("startTransition", "runningState", "endTransition", "completeState"):
                        raise self.err(vw, f"state {state!r} is not supported; allowed: startTransition, runningState, "
                                           "endTransition, completeState")
                elif typ == "maneuver" and ref in self.maneuver_events and state in ("endTransition", "completeState"):
                    out.update(type="events_ended", events=self.maneuver_events[ref])
                elif typ == "maneuver" and ref in self.maneuver_events and starts:
                    out.update(type="any_event_started", events=self.maneuver_events[ref])
                else:
                    raise self.err(vw, f"storyboard element {typ} {ref!r} in state {state!r} is not supported "
                                       "(allowed: an act's start, an event's start or end, a maneuver's start or end, "
                                       "declared before this condition)")
            elif v.tag == "ParameterCondition":
                name = v.get("parameterRef")
                if name not in self.params:
                    raise self.err(vw, f"unknown parameter {name!r}")
                out.update(type="const", value=_compare(self.params[name], v.get("rule"), self.value(v.get("value"), vw)))
            else:
                raise self.unsupported(v, vw)
            return out
        if kind.tag != "ByEntityCondition":
            raise self.unsupported(kind, kw)
        te = kind.find("TriggeringEntities")
        rule = te.get("triggeringEntitiesRule")
        ents = [self.ref(self.text(e, "entityRef", kw), f"{kw}/TriggeringEntities") for e in te]
        ec, ew = self.only(kind.find("EntityCondition"), f"{kw}/EntityCondition")
        out.update(entities=ents, all=rule == "all")
        if ec.tag in ("TimeHeadwayCondition", "TimeToCollisionCondition", "RelativeDistanceCondition"):
            if ec.get("freespace") in ("true", "1") and ec.tag != "TimeToCollisionCondition":
                out["freespace"] = True
            out.update(rule=ec.get("rule"), value=self.num(ec, "value", ew))
            if ec.tag == "TimeToCollisionCondition":
                tgt, tw = self.only(ec.find("TimeToCollisionConditionTarget"), f"{ew}/TimeToCollisionConditionTarget")
                free = ec.get("freespace") in ("true", "1")
                if tgt.tag == "Position":
                    x, y, _, _ = self.point(tgt, tw)
                    out.update(type="ttc_point", x=x, y=y, freespace=free)
                elif tgt.tag == "EntityRef":
                    out.update(type="ttc", to=self.ref(self.text(tgt, "entityRef", tw), tw), freespace=free)
                else:
                    raise self.unsupported(tgt, tw)
            else:
                out.update(type="headway" if ec.tag == "TimeHeadwayCondition" else "reldist",
                           to=self.ref(self.text(ec, "entityRef", ew), ew))
                rdt = ec.get("relativeDistanceType", "longitudinal")
                if ec.tag == "RelativeDistanceCondition" and rdt not in ("longitudinal", "lateral", "cartesianDistance",
                                                                         "euclidianDistance"):
                    raise self.err(f"{ew}@relativeDistanceType", f"{rdt!r} is not supported")
                out["longitudinal"] = rdt == "longitudinal"
                out["lateral"] = rdt == "lateral"
        elif ec.tag == "SpeedCondition":
            out.update(type="speed", rule=ec.get("rule"), value=self.num(ec, "value", ew))
        elif ec.tag == "RelativeSpeedCondition":
            out.update(type="relspeed", rule=ec.get("rule"), value=self.num(ec, "value", ew),
                       to=self.ref(self.text(ec, "entityRef", ew), ew))
        elif ec.tag == "StandStillCondition":
            out.update(type="standstill", duration=self.num(ec, "duration", ew))
        elif ec.tag == "TraveledDistanceCondition":
            out.update(type="traveled", value=self.num(ec, "value", ew))
        elif ec.tag == "CollisionCondition":
            tgt, tw = self.only(ec, ew)
            if tgt.tag == "ByType":
                typ = tgt.get("type")
                kinds = {"vehicle": ["car", "van", "truck", "bus", "motorcycle", "cyclist"],
                         "pedestrian": ["pedestrian", "child", "deer", "dog", "animal"],
                         "miscellaneous": ["debris", "ball"]}.get(typ)
                if kinds is None:
                    raise self.err(f"{tw}@type", f"got {typ!r}; allowed: vehicle, pedestrian, miscellaneous")
                out.update(type="collision_kind", kinds=kinds)
            elif tgt.tag == "EntityRef":
                out.update(type="collision", to=self.ref(self.text(tgt, "entityRef", tw), tw))
            else:
                raise self.unsupported(tgt, tw)
        elif ec.tag == "EndOfRoadCondition":
            out.update(type="endofroad", duration=self.num(ec, "duration", ew))
        elif ec.tag == "ReachPositionCondition":
            x, y, _, _ = self.point(ec.find("Position"), f"{ew}/Position")
            out.update(type="reach", x=x, y=y, value=self.num(ec, "tolerance", ew))
        elif ec.tag == "DistanceCondition":
            x, y, _, _ = self.point(ec.find("Position"), f"{ew}/Position")
            out.update(type="distance", x=x, y=y, rule=ec.get("rule"), value=self.num(ec, "value", ew))
        else:
            raise self.unsupported(ec, ew)
        return out

    def trigger(self, t: ET.Element | None, where: str) -> list:
        """A StartTrigger/StopTrigger: an OR of condition groups, each an AND of conditions."""
        if t is None:
            return []
        groups = []
        for g, gw in self.kids(t, where):
            groups.append([self.condition(c, cw) for c, cw in self.kids(g, gw)])
        return groups

    # ------------------------------------------------------------------ actions
    def private_action(self, pa: ET.Element, where: str, sid: str, ev: str) -> dict:
        act, aw = self.only(pa, where)
        if act.tag == "LongitudinalAction":
            sp, sw = self.only(act, aw)
            if sp.tag != "SpeedAction":
                raise self.unsupported(sp, sw)
            dyn = sp.find("SpeedActionDynamics")
            dw = f"{sw}/SpeedActionDynamics"
            shape, dim = dyn.get("dynamicsShape"), dyn.get("dynamicsDimension")
            if dim not in ("time", "rate"):
                raise self.err(dw, f"dynamicsDimension {dim!r} is not supported; allowed: time, rate")
            params = {"shape": shape, "dimension": dim, "value": self.num(dyn, "value", dw), "event": ev}
            tgt, tw = self.only(sp.find("SpeedActionTarget"), f"{sw}/SpeedActionTarget")
            if tgt.tag == "AbsoluteTargetSpeed":
                params["target"] = self.num(tgt, "value", tw)
            else:
                params.update(of=self.ref(self.text(tgt, "entityRef", tw), tw), rel=tgt.get("speedTargetValueType"),
                              target=self.num(tgt, "value", tw), continuous=tgt.get("continuous") in ("true", "1"))
            return {"type": "xosc_speed", "params": params}
        if act.tag == "ActivateControllerAction" or (act.tag == "ControllerAction" and act.find("ActivateControllerAction") is not None):
            ac = act if act.tag == "ActivateControllerAction" else act.find("ActivateControllerAction")
            if sid not in self.controllers:  # no controller assigned: the default one (keep lane and speed)
                return {"type": "lane_follow", "obstacles": "none"}
            on = [ac.get(k) in ("true", "1", None) for k in ("longitudinal", "lateral")]
            if not any(on) or "(a human" in self.controllers[sid]:
                return {"type": "lane_follow", "obstacles": "none"}
            # simgen's driver model: IDM car-following along its lane, reacting to everything ahead
            return {"type": "lane_follow", "obstacles": "all"}
        if act.tag == "SynchronizeAction":
            return self.synchronize(act, aw, sid, ev)
        if act.tag == "RoutingAction":
            return self.routing(act, aw, sid, ev=ev)
        if act.tag == "LateralAction":
            lc, lw = self.only(act, aw)
            if lc.tag == "LaneOffsetAction":
                return {"type": "xosc_speed", "params": {"event": ev, "offset": self.lane_offset(lc, lw, sid)}}
            if lc.tag != "LaneChangeAction":
                raise self.unsupported(lc, lw)
            dyn = lc.find("LaneChangeActionDynamics")
            dw = f"{lw}/LaneChangeActionDynamics"
            dim = dyn.get("dynamicsDimension")
            if dim not in ("time", "distance") or dyn.get("dynamicsShape") not in ("sinusoidal", "cubic"):
                raise self.err(dw, "only a sinusoidal or cubic lane change over a time or a distance is supported "
                                   "(simgen's lane change is a smooth cosine blend over a duration)")
            tgt, tw = self.only(lc.find("LaneChangeTarget"), f"{lw}/LaneChangeTarget")
            target_off = self.num(lc, "targetLaneOffset", lw, 0.0)
            if sid not in self.lanepos:
                raise self.err(lw, "a lane change needs the actor to start on a LanePosition")
            road, own = self.lanepos[sid]
            if tgt.tag == "RelativeTargetLane":
                ref = self.ref(self.text(tgt, "entityRef", tw), tw)
                if ref not in self.lanepos or self.lanepos[ref][0] != road:
                    raise self.err(tw, "the reference entity must start on a LanePosition on the same road")
                lane = _lane_step(self.lanepos[ref][1], int(self.num(tgt, "value", tw)))
            else:
                lane = int(self.num(tgt, "value", tw))
            steps = _lane_index(lane) - _lane_index(own)
            if abs(steps) != 1:
                raise self.err(tw, f"a change from lane {own} to lane {lane} is {abs(steps)} lanes; simgen changes one "
                                   "lane at a time")
            # lanes with negative ids run along +s: a smaller id is further right
            right = (steps < 0) if own < 0 else (steps > 0)
            self.lanepos[sid] = (road, lane)
            dur = self.num(dyn, "value", dw)
            if dim == "distance":  # over that distance at the actor's initial speed
                v0 = self.actor[sid]["speed_mps"]
                if v0 <= 0:
                    raise self.err(dw, "a lane change over a distance needs a moving actor (an initial speed > 0)")
                dur /= v0
            self.event_end[ev] = {"after_s": dur}
            out = {"type": "lane_change", "direction": "right" if right else "left", "duration_s": dur,
                   "obstacles": "none", "params": {"road": road, "lane_id": lane}}
            if abs(target_off) > 1e-9:  # ends off the target lane's centre: a keep-speed action blends to the offset
                out["_then"] = {"type": "xosc_speed", "params": {"event": ev, "lc_offset": target_off if lane < 0
                                                                 else -target_off}}
            return out
        raise self.unsupported(act, aw)

    def synchronize(self, el: ET.Element, where: str, sid: str, ev: str) -> dict:
        """SynchronizeAction → simgen's ``synchronize``: own point ``at`` (TargetPosition), the master's point
        ``reference_at`` (TargetPositionMaster), both moved from the reference point to the box centre."""
        ref = self.ref(self.text(el, "masterEntityRef", where), where)
        pts = []
        for tag, who in (("TargetPosition", sid), ("TargetPositionMaster", ref)):
            x, y, h, _ = self.point(el.find(tag), f"{where}/{tag}")
            cx = self.actor[who]["_cx"]
            pts.append([x + cx * math.cos(h), y + cx * math.sin(h)])
        out = {"type": "synchronize", "reference": ref, "at": pts[0], "reference_at": pts[1], "obstacles": "none"}
        fs = el.find("FinalSpeed")
        if fs is not None:
            f, fw = self.only(fs, f"{where}/FinalSpeed")
            if f.tag == "AbsoluteSpeed":
                out["final_speed_mps"] = self.num(f, "value", fw)
            else:  # RelativeSpeedToMaster: against the master's initial speed (simgen's final speed is a number)
                v, vm = self.num(f, "value", fw), self.actor[ref]["speed_mps"]
                out["final_speed_mps"] = vm * v if f.get("speedTargetValueType") == "factor" else vm + v
            if out["final_speed_mps"] < 0:
                raise self.err(fw, f"a final speed of {out['final_speed_mps']:g} m/s; allowed: >= 0")
        self.event_end[ev] = {"log": f"{sid}:synchronized"}
        return out

    def lane_offset(self, el: ET.Element, where: str, sid: str) -> dict:
        """LaneOffsetAction → the lateral part of ``xosc_speed``: from the offset at the start to the target (m,
        towards +t of the road, i.e. simgen's left on lanes with negative ids and its right on positive ones)."""
        dyn = el.find("LaneOffsetActionDynamics")
        dw = f"{where}/LaneOffsetActionDynamics"
        shape = dyn.get("dynamicsShape")
        sign = 1.0 if self.lanepos.get(sid, (0, -1))[1] < 0 else -1.0
        tgt, tw = self.only(el.find("LaneOffsetTarget"), f"{where}/LaneOffsetTarget")
        out = {"shape": shape, "max_acc": self.num(dyn, "maxLateralAcc", dw, 0.5),
               "continuous": el.get("continuous") in ("true", "1")}
        if tgt.tag == "AbsoluteTargetLaneOffset":
            out["target"] = sign * self.num(tgt, "value", tw)
        else:
            out.update(of=self.ref(self.text(tgt, "entityRef", tw), tw), target=sign * self.num(tgt, "value", tw))
        if out["max_acc"] <= 0:
            raise self.err(f"{dw}@maxLateralAcc", "allowed: > 0")
        return out

    def trajectory(self, el: ET.Element, where: str, sid: str, ev: str) -> dict:
        """FollowTrajectoryAction → ``xosc_trajectory``: the shape sampled into world points (polyline vertices;
        clothoids with pyclothoids), with vertex times when the TimeReference has Timing."""
        (pts, times), tr, tw = self.trajectory_shape(el, where, full=True)
        out = {"points": pts, "event": ev}
        if el.get("initialDistanceOffset") is not None:
            out["start_s"] = self.num(el, "initialDistanceOffset", where)
        timing = el.find("TimeReference/Timing")
        if timing is not None:
            if any(t is None for t in times):
                raise self.err(f"{where}/TimeReference/Timing", "timing needs a time at every vertex")
            scale, off = self.num(timing, "scale", f"{where}/TimeReference/Timing", 1.0), self.num(timing, "offset", f"{where}/TimeReference/Timing", 0.0)
            ts = [t * scale + off for t in times]
            if timing.get("domainAbsoluteRelative") == "relative":
                out["times_rel"] = [t - ts[0] for t in ts]
            else:
                out["times_abs"] = ts
            if any(b < a for a, b in zip(ts, ts[1:])):
                raise self.err(f"{tw}/Shape", "vertex times must not decrease")
        elif el.find("TimeReference/None") is None and el.find("TimeReference") is not None:
            raise self.unsupported(*self.only(el.find("TimeReference"), f"{where}/TimeReference"))
        if tr.get("closed") in ("true", "1"):
            raise self.err(f"{tw}@closed", "closed trajectories are not supported")
        self.event_end[ev] = {"done": True}
        return {"type": "xosc_trajectory", "params": out}

    def trajectory_shape(self, el: ET.Element, where: str, full: bool = False):
        """The (points, vertex times) of the Trajectory an element holds: in a TrajectoryRef (1.2+) or directly
        (1.0-1.1), inline or from a catalog."""
        holder, tw = (el.find("TrajectoryRef"), f"{where}/TrajectoryRef") if el.find("TrajectoryRef") is not None \
            else (el, where)
        tr = holder.find("Trajectory")
        if tr is None:
            ref = holder.find("CatalogReference")
            if ref is None:
                raise self.err(where, "needs a Trajectory or a catalog reference to one")
            tr, params = self.catalog_entry(ref, f"{tw}/CatalogReference")
            saved, self.params = self.params, {**self.params, **params}
        else:
            saved = self.params
        tw = f"{tw}/Trajectory"
        try:
            shape = self.shape(tr.find("Shape"), f"{tw}/Shape")
        finally:
            self.params = saved
        return (shape, tr, tw) if full else shape

    def shape(self, sh: ET.Element, where: str) -> tuple[list, list]:
        kind, kw = self.only(sh, where)
        if kind.tag == "Polyline":
            pts, times = [], []
            for v, vw in self.kids(kind, kw):
                x, y, _, _ = self.point(v.find("Position"), f"{vw}/Position")
                pts.append([x, y])
                times.append(self.num(v, "time", vw) if v.get("time") is not None else None)
            if len(pts) < 2:
                raise self.err(kw, "a polyline needs at least two vertices")
            return pts, times
        if kind.tag == "Clothoid":
            from pyclothoids import Clothoid

            x, y, h, _ = self.point(kind.find("Position"), f"{kw}/Position")
            k0 = self.num(kind, "curvature", kw)
            dk = kind.get("curvaturePrime") or kind.get("curvatureDot")
            dk = self.num(kind, "curvaturePrime" if kind.get("curvaturePrime") is not None else "curvatureDot", kw) if dk is not None else 0.0
            length = self.num(kind, "length", kw)
            if length <= 0:
                raise self.err(f"{kw}@length", "allowed: > 0")
            c = Clothoid.StandardParams(x, y, h, k0, dk, length)
            n = max(2, int(math.ceil(length / 0.5)) + 1)
            xs, ys = c.SampleXY(n)
            t0, t1 = kind.get("startTime"), kind.get("stopTime")
            if t0 is not None and t1 is not None:
                a, b = self.num(kind, "startTime", kw), self.num(kind, "stopTime", kw)
                times = [a + (b - a) * i / (n - 1) for i in range(n)]
            else:
                times = [None] * n
            return [[float(p), float(q)] for p, q in zip(xs, ys)], times
        raise self.unsupported(kind, kw)

    # ------------------------------------------------------------------ storyboard
    def storyboard(self, sb: ET.Element) -> tuple[list, list]:
        end: list = []  # (kept for the signature: StopTrigger groups are mapped by stop())
        for st, sw in self.kids(sb, "Storyboard"):
            if st.tag in ("Init", "StopTrigger"):
                continue
            if st.tag != "Story":
                raise self.unsupported(st, sw)
            saved = dict(self.params)
            self.declare(st.find("ParameterDeclarations"), f"{sw}/ParameterDeclarations", self.params)
            for act, aw in self.kids(st, sw):
                if act.tag == "ParameterDeclarations":
                    continue
                if act.tag != "Act":
                    raise self.unsupported(act, aw)
                self.act(act, aw)
            self.params = saved
        return end, self.trigger(sb.find("StopTrigger"), "Storyboard/StopTrigger")

    def act(self, act: ET.Element, where: str) -> None:
        start = self.trigger(act.find("StartTrigger"), f"{where}/StartTrigger")
        stop = self.trigger(act.find("StopTrigger"), f"{where}/StopTrigger")
        self.acts[act.get("name")] = start
        self.act_events[act.get("name")] = act_events = []
        # an Act StopTrigger: once it has held, no event of the act starts any more (a gate AND-ed into every event's
        # trigger), and an actor whose action of this act is running goes back to keeping its lane and speed
        gate = [[{"type": "unlatched", "groups": stop, "edge": "none", "delay": 0.0}]] if stop else []
        started: dict[str, list] = {}
        for mg, mw in self.kids(act, where):
            if mg.tag in ("StartTrigger", "StopTrigger"):
                continue
            if mg.tag != "ManeuverGroup":
                raise self.unsupported(mg, mw)
            if int(self.num(mg, "maximumExecutionCount", mw, 1)) != 1:
                raise self.err(f"{mw}@maximumExecutionCount", "only 1 is supported (events fire once)")
            actors = mg.find("Actors")
            if actors.get("selectTriggeringEntities") in ("true", "1"):
                raise self.err(f"{mw}/Actors", "selectTriggeringEntities=true is not supported")
            owners = [self.ref(self.text(e, "entityRef", mw), f"{mw}/Actors") for e in actors]
            for m, manw in self.kids(mg, mw):
                if m.tag == "Actors":
                    continue
                saved = self.params
                if m.tag == "CatalogReference":
                    m, mparams = self.catalog_entry(m, manw)
                    self.params = {**self.params, **mparams}  # the entry's parameters, over the scenario's
                elif m.tag == "Maneuver":
                    self.params = dict(self.params)
                    self.declare(m.find("ParameterDeclarations"), f"{manw}/ParameterDeclarations", self.params)
                else:
                    raise self.unsupported(m, manw)
                try:
                    for sid, name in self.maneuver(m, manw, owners, start, gate):
                        started.setdefault(sid, []).append(name)
                        act_events.append(name)
                finally:
                    self.params = saved
        for sid, names in started.items() if stop else ():
            name = _ident(f"{act.get('name')}_stop_{sid}", self._used_names())
            walker = self.actor[sid]["kind"] in WALKERS
            do = {"type": "walk"} if walker else {"type": "lane_follow", "obstacles": "none"}
            groups = _and([[{"type": "any_event_started", "events": names, "edge": "none", "delay": 0.0}]], stop)
            self.actor[sid]["events"].append({"name": name, "do": do, "when": {
                "custom": "xosc_condition", "params": {"id": name, "groups": groups, "ends": self.event_end}}})

    def _used_names(self) -> set:
        return {e["name"] for a in self.actor.values() for e in a["events"]} | set(self.event_names.values())

    def maneuver(self, m: ET.Element, where: str, owners: list[str], act_start: list, gate: list = ()) -> list:
        """The maneuver's events, for each owner; returns (owner, simgen event name) pairs."""
        names = self.maneuver_events[m.get("name")] = []  # a maneuver played again (catalog) refers to its own events
        out = []
        for e, ew in self.kids(m, where):
            if e.tag == "ParameterDeclarations":
                continue  # declared by act()
            if e.tag != "Event":
                raise self.unsupported(e, ew)
            if int(self.num(e, "maximumExecutionCount", ew, 1)) != 1:
                raise self.err(f"{ew}@maximumExecutionCount", "only 1 is supported (events fire once)")
            start = self.trigger(e.find("StartTrigger"), f"{ew}/StartTrigger")
            actions = [(a, aw) for a, aw in self.kids(e, ew) if a.tag == "Action"]
            base = _ident(e.get("name"), self._used_names())
            self.event_names[e.get("name")] = base  # later references to this name mean this (the latest) event
            for a, _ in actions:  # an action starts and ends with its event (one action per event, or played as one)
                self.action_events[a.get("name")] = base
            names.append(base)
            for k, sid in enumerate(owners):
                name = base if k == 0 else _ident(f"{base}_{sid}", self._used_names())
                do = self.event_action(actions, ew, sid, name)
                glob = do.pop("_global", None)
                if glob is not None:  # played by the trigger; the owner's behaviour stays
                    do = {"type": "stand"}
                self._n += 1
                act = [[{"type": "latched", "groups": act_start, "edge": "none", "delay": 0.0}]] if act_start else []
                groups = _and(_and(act, list(gate)), start) or [[{"type": "time", "rule": "greaterOrEqual",
                                                                   "value": 0.0, "edge": "none", "delay": 0.0}]]
                when = {"custom": "xosc_condition", "params": {"id": name, "groups": groups,
                                                               "ends": self.event_end}}
                if glob is not None:
                    when["params"]["global"] = glob
                    self.event_end[name] = {"log": name}
                self.actor[sid]["events"].append({"name": name, "when": when, "do": do})
                out.append((sid, name))
                then = do.pop("_then", None)
                if then is not None:
                    name2 = _ident(f"{name}_speed", self._used_names())
                    then["params"]["event"] = name2
                    when2 = {"custom": "xosc_condition", "params": {"id": name2, "groups": groups, "ends": self.event_end}}
                    self.actor[sid]["events"].append({"name": name2, "when": when2, "do": then})
                    self.event_end[name] = dict(self.event_end.get(name, {}), also=name2)
                if glob is not None:
                    break  # a global action happens once, whoever the actors are
        return out

    def event_action(self, actions: list, where: str, sid: str, ev: str) -> dict:
        """The behaviour an Event's actions give its owner ``sid``.  One action, or a SpeedAction together with a
        LaneOffsetAction or a FollowTrajectoryAction (played as one behaviour)."""
        dos = []
        for a, aw in actions:
            pa, pw = self.only(a, aw)
            if pa.tag == "GlobalAction" and len(actions) == 1:
                return self.global_action(pa, pw)
            if pa.tag != "PrivateAction":
                raise self.unsupported(pa, pw)
            dos.append((self.private_action(pa, pw, sid, ev), aw))
        if len(dos) == 1:
            return dos[0][0]
        speed = [d for d, _ in dos if d["type"] == "xosc_speed" and "offset" not in d["params"]]
        other = [(d, w) for d, w in dos if not (d["type"] == "xosc_speed" and "offset" not in d["params"])]
        if len(dos) == 2 and len(speed) == 1 and other[0][0]["type"] == "lane_change":
            # played as two events on the same trigger: the lane change, then the speed action (which lets a lane
            # change in progress finish)
            lc = dict(other[0][0])
            off = lc.pop("_then", {"params": {}})["params"].get("lc_offset")
            sp = speed[0]
            if off is not None:
                sp["params"]["lc_offset"] = off
            return dict(lc, _then=sp)
        if len(dos) != 2 or len(speed) != 1 or other[0][0]["type"] not in ("xosc_speed", "xosc_trajectory"):
            raise self.err(where, f"an Event with {len(dos)} actions: simgen plays one action per event, or a "
                                  "SpeedAction with a LaneOffsetAction or a FollowTrajectoryAction")
        do = other[0][0]
        if do["type"] == "xosc_speed":
            do["params"].update({k: v for k, v in speed[0]["params"].items() if k != "event"})
        else:
            do["params"]["speed"] = speed[0]["params"]
        return do

    def stop(self, groups: list) -> tuple[list, dict]:
        """StopTrigger → ``end:``.  Groups are OR-ed like ``end:``; each must be one mappable condition."""
        end = []
        for i, g in enumerate(groups):
            c = g[0]
            if len(g) == 1 and c["type"] == "time" and c["rule"] in ("greaterThan", "greaterOrEqual"):
                end.append({"time_s": c["value"] + c["delay"]})
            else:  # any other condition: an ego event on the same trigger ends the episode on the tick it fires
                name = _ident(f"stop_{i + 1}", set(self.event_names.values()))
                self.actor["ego"]["events"].append({"name": name, "do": {"type": "stand"}, "when": {
                    "custom": "xosc_condition", "params": {"id": name, "groups": [g], "ends": self.event_end}}})
                end.append({"event": name})
        return end, {}

    # ------------------------------------------------------------------ top level
    def convert(self) -> dict:
        r = self.root
        for c, w in self.kids(r, ""):
            if c.tag in ("FileHeader", "ParameterDeclarations", "CatalogLocations", "RoadNetwork", "Entities",
                         "Storyboard"):
                continue
            if c.tag == "ParameterValueDistribution":
                raise self.err(w, "a ParameterValueDistribution file is a set of runs, not one scenario; "
                                  "use `simgen batch` on it")
            raise self.unsupported(c, w)
        self.declare(r.find("ParameterDeclarations"), "ParameterDeclarations", self.declared)
        self.declared.update({k: v for k, v in self.overrides.items() if k in self.declared})
        self.params = dict(self.declared)
        rn = r.find("RoadNetwork")
        lf = rn.find("LogicFile") if rn is not None else None
        if lf is None:
            raise self.err("RoadNetwork", "needs a LogicFile (an OpenDRIVE .xodr map)")
        for c, w in self.kids(rn, "RoadNetwork"):
            if c.tag not in ("LogicFile", "SceneGraphFile"):  # the scene graph is a visual model simgen builds itself
                raise self.unsupported(c, w)
        xodr = (self.path.parent / self.text(lf, "filepath", "RoadNetwork/LogicFile")).resolve()
        if not xodr.is_file():
            raise self.err("RoadNetwork/LogicFile@filepath", f"map file {str(xodr)!r} not found")
        from simgen.spec.xosc_geo import Geo

        self.geo = Geo(xodr, self.err)
        self.entities()
        sb = r.find("Storyboard")
        self.init(sb)
        _, stop_groups = self.storyboard(sb)
        end, _ = self.stop(stop_groups)
        ego = self.actor["ego"]
        actors = []
        for sid, a in self.actor.items():
            a.pop("_cx")
            on = a.pop("_controller_on", None)
            v = a["speed_mps"]
            if a["kind"] in WALKERS:
                a["behaviour"] = {"type": "walk", "speed_mps": v} if v > 0 else {"type": "stand"}
            else:
                a["behaviour"] = {"type": "lane_follow", "speed_mps": v, "obstacles": "none"} if v > 0 else {"type": "stand"}
                if on is not None:
                    a["behaviour"] = dict(on, speed_mps=v)
            if sid in self.route_of and a["kind"] not in WALKERS:  # every behaviour keeps the route's turns
                turns = self.turns(sid, self.route_of[sid]["where"])
                for b in [a["behaviour"]] + [e["do"] for e in a["events"]]:
                    b.setdefault("turns", turns)
            if sid != "ego":
                actors.append(a)
        hdr = r.find("FileHeader")
        times = [c["time_s"] for c in end if "time_s" in c]
        raw = {
            "name": _ident(self.path.stem, set()),
            "description": (hdr.get("description") or "")[:10000] + f" (imported from {self.path.name})",
            "map": str(xodr), "tick_hz": 20.0,
            "duration_s": max(times) if times else 60.0,
            "parameters": dict(self.declared),
            "ego": {k: ego[k] for k in ("kind", "dims", "place", "speed_mps", "behaviour", "events")},
            "actors": actors,
        }
        if end:
            raw["end"] = end
        if self.weather:
            raw["weather"] = dict(self.weather)
        if self.time_of_day is not None:
            raw["time_of_day_h"] = self.time_of_day
        if self.env_notes:
            raw["description"] += "; not modelled: " + ", ".join(self.env_notes)
        return raw


def _ident(name: str, used: set) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name or "x")
    if not s[0].isalpha():
        s = "x" + s
    base, k = s, 2
    while s in used or s == "ego":
        s, k = f"{base}_{k}", k + 1
    return s


def _num_or(v):
    try:
        return float(v) if not isinstance(v, bool) else v
    except (TypeError, ValueError):
        return v


def _typed(v, typ, err):
    try:
        if typ in ("double",):
            return float(v)
        if typ in ("integer", "unsignedInt", "unsignedShort"):
            return int(float(v))
        if typ == "boolean":
            return v if isinstance(v, bool) else str(v).lower() in ("true", "1")
        return str(v)
    except (TypeError, ValueError):
        raise err from None


def _compare(a, rule, b) -> bool:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        a, b = str(a), str(b)
    return {"greaterThan": a > b, "lessThan": a < b, "equalTo": a == b, "greaterOrEqual": a >= b,
            "lessOrEqual": a <= b, "notEqualTo": a != b}[rule]


def _and(a: list, b: list) -> list:
    """(OR of ANDs) AND (OR of ANDs)."""
    if not a:
        return b
    if not b:
        return a
    return [ga + gb for ga in a for gb in b]


def _light_state(text: str, err, where: str) -> str:
    """An OpenSCENARIO signal state → simgen's red/yellow/green.  Names (``red``, ``amber`` ...) or esmini's lamp
    lists top to bottom (``on;off;off`` is red, ``off;on;off`` yellow, ``off;off;on`` green, red+yellow is red)."""
    t = (text or "").strip().lower()
    if t in ("red", "yellow", "green"):
        return t
    if t == "amber":
        return "yellow"
    lamps = [x.strip() for x in t.split(";")]
    if len(lamps) == 3 and set(lamps) <= {"on", "off"}:
        on = tuple(x == "on" for x in lamps)
        st = {(True, False, False): "red", (True, True, False): "red", (False, True, False): "yellow",
              (False, False, True): "green"}.get(on)
        if st is not None:
            return st
    raise err(where, f"got {text!r}; allowed: red, yellow, amber, green, or three lamps such as off;off;on")


def _lane_index(lane: int) -> int:
    """Lane ids skip 0: -1 and 1 are neighbours."""
    return lane if lane < 0 else lane - 1


def _lane_step(lane: int, n: int) -> int:
    i = _lane_index(lane) + n
    return i if i < 0 else i + 1


def _category(el: ET.Element) -> str:
    return el.get("vehicleCategory") or el.get("pedestrianCategory") or el.get("miscObjectCategory") or "?"


def load_xosc(path: str | Path, overrides: list[str] = ()) -> dict:
    """The raw scenario mapping of an OpenSCENARIO file; ``parameters.NAME=V`` overrides set its declarations."""
    import yaml

    path = Path(path)
    pov = {}
    for item in overrides:
        key, _, val = item.partition("=")
        parts = key.strip().split(".")
        if len(parts) == 2 and parts[0] == "parameters":
            pov[parts[1]] = yaml.safe_load(val)
    conv = _Conv(path, pov)
    raw = conv.convert()
    raw["description"] += "".join(f"; {k}: controller {v}" for k, v in conv.controllers.items())
    raw["description"] += "; actor kinds: " + "; ".join(f"{k}: {v}" for k, v in conv.kinds.items())
    return raw
