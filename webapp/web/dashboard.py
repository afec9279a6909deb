"""Dashboard pages for coordinators: drafts, preview, approval, email lists."""

from flask import Blueprint, render_template, send_from_directory
from flask_login import login_required

from webapp.settings import PROJECT_ROOT

dashboard = Blueprint("dashboard", __name__)

HTMX_DIST = PROJECT_ROOT / "node_modules" / "htmx.org" / "dist"


@dashboard.route("/vendor/htmx.min.js")
def vendor_htmx():
    """Serve htmx as installed from npm."""
    return send_from_directory(HTMX_DIST, "htmx.min.js", max_age=86400)


@dashboard.route("/")
@login_required
def drafts():
    """List drafts awaiting approval."""
    return render_template("dashboard/drafts.html")


@dashboard.route("/emails")
@login_required
def emails():
    """List queued, sent and failed emails."""
    return render_template("dashboard/emails.html")
