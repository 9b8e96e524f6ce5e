"""Which site a job submitted at a hub goes to (coordinator/sites.py), from what the bridges carry up."""

from __future__ import annotations

from typing import Any

from edgehive.coordinator.sites import SiteBook
from edgehive.schemas import Capabilities, CoordinatorStats, Requirements


def caps(node: str, **overrides: Any) -> Capabilities:
    fields: dict[str, Any] = dict(node=node, boot_id="b1", ts=0, version="0", arch="aarch64", board="pi", os="l", python="3",
                                  cores=4, ram_mb=4096, kinds=["sleep"], workers=1, slots=1)
    return Capabilities(**(fields | overrides))


def stats(queued: int, online: int) -> CoordinatorStats:
    return CoordinatorStats(ts=0, uptime_s=1, nodes_online=online, nodes_known=online, queued=queued, in_flight=0, submitted=0,
                            done=0, failed=0, retried=0, rejected=0, duplicates=0, jobs_per_s=0)


def book_of(**sites: list[Capabilities]) -> SiteBook:
    book = SiteBook()
    for site, nodes in sites.items():
        book.on_link(site, True)
        for node_caps in nodes:
            book.on_capabilities(site, node_caps)
            book.on_status(site, node_caps.node, True)
    return book


def test_a_job_goes_to_the_site_with_a_live_node_that_meets_its_requirements() -> None:
    book = book_of(barn=[caps("barn-pi", tags=["milking"])], shop=[caps("shop-pi", tags=["till"])])
    assert book.choose("sleep", Requirements(tags=["till"]))[0] == "shop"
    assert book.choose("sleep", Requirements(tags=["milking"]))[0] == "barn"
    site, why = book.choose("sleep", Requirements(tags=["welding"]))
    assert site is None and "no site has a live node" in why and "barn, shop" in why
    book.on_status("shop", "shop-pi", False)  # its only node went offline
    assert book.choose("sleep", Requirements(tags=["till"]))[0] is None


def test_among_able_sites_the_least_loaded_with_its_link_up_wins() -> None:
    book = book_of(barn=[caps("barn-pi")], shop=[caps("shop-pi"), caps("shop-pi2")])
    book.on_stats("barn", stats(queued=10, online=1))
    book.on_stats("shop", stats(queued=4, online=2))
    assert book.choose("sleep", None)[0] == "shop"
    book.on_link("shop", False)
    assert book.choose("sleep", None)[0] == "barn"  # the shop is cut off: the barn, though busier
    book.on_link("barn", False)
    site, why = book.choose("sleep", None)
    assert site == "shop" and "waits at the hub" in why  # all cut off: it waits for the first link back


def test_a_node_that_left_its_site_s_fleet_is_no_reason_to_send_a_job_there() -> None:
    """Its site's coordinator cleared its retained capabilities (it was dead for forget_after_s):
    the hub reads the empty message as the node gone."""
    book = book_of(barn=[caps("barn-pi", tags=["milking"])])
    book.on_capabilities("barn", "barn-pi")
    site, why = book.choose("sleep", Requirements(tags=["milking"]))
    assert site is None and "no site has a live node" in why
