"""What the hub knows of each site, and which site a job submitted at the hub should go to.

Everything comes from what the sites' bridges already carry up (broker/bridge.sh): every
node's retained capabilities and status under `sites/{site}/nodes/…`, each site coordinator's
stats, and the bridge's own `sites/{site}/bridge` (`1` up, `0` down). So the hub needs no
protocol of its own: a job goes to a site with a live node able to run it (the same check a
site's scheduler makes, `scheduler.unmet`), whose link is up, and whose queue is the shortest
per live node. The site's own coordinator then places it as it would any job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgehive.schemas import Capabilities, CoordinatorStats, Requirements

from .scheduler import unmet


@dataclass
class Site:
    id: str
    link_up: bool = False
    caps: dict[str, Capabilities] = field(default_factory=dict)  # node → its capabilities
    online: set[str] = field(default_factory=set)
    stats: CoordinatorStats | None = None

    def runners(self, kind: str, requires: Requirements | None) -> list[str]:
        """Live nodes of this site that could run the job."""
        return sorted(n for n in self.online if n in self.caps and unmet(self.caps[n], kind, requires) is None)

    def load(self) -> float:
        """Queued jobs per live node, from the site coordinator's last stats."""
        if self.stats is None:
            return 0.0
        return self.stats.queued / max(1, self.stats.nodes_online)


class SiteBook:
    """The sites seen through their bridges."""

    def __init__(self) -> None:
        self.sites: dict[str, Site] = {}

    def site(self, site_id: str) -> Site:
        found = self.sites.get(site_id)
        if found is None:
            found = self.sites[site_id] = Site(site_id)
        return found

    def on_capabilities(self, site_id: str, caps: Capabilities | str) -> None:
        """A node's capabilities; a bare node id: the node left the site's fleet."""
        site = self.site(site_id)
        if isinstance(caps, str):
            site.caps.pop(caps, None)
            site.online.discard(caps)
        else:
            site.caps[caps.node] = caps

    def on_status(self, site_id: str, node: str, online: bool) -> None:
        nodes = self.site(site_id).online
        if online:
            nodes.add(node)
        else:
            nodes.discard(node)

    def on_link(self, site_id: str, up: bool) -> None:
        self.site(site_id).link_up = up

    def on_stats(self, site_id: str, stats: CoordinatorStats) -> None:
        self.site(site_id).stats = stats

    def choose(self, kind: str, requires: Requirements | None, exclude: str | None = None) -> tuple[str | None, str]:
        """(the site for the job, why) — or (None, why no site can run it now). `exclude`: the
        site that handed the job up, which cannot run it."""
        able = [(s, n) for s in self.sites.values() if s.id != exclude and (n := len(s.runners(kind, requires)))]
        if not able:
            known = ", ".join(sorted(self.sites)) or "none"
            return None, f"no site has a live node that can run it (sites known: {known})"
        reachable = [(s, n) for s, n in able if s.link_up] or able  # all cut off: it waits at the hub for the first link back
        best, runners = min(reachable, key=lambda sn: (sn[0].load(), -sn[1], sn[0].id))
        cut = "" if best.link_up else "; its link is down, the job waits at the hub until it is back"
        return best.id, f"{runners} live node(s) there can run it{cut}"
