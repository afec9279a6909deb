"""Directory of therapists: find one and open the contact calendar."""

from flask import Blueprint, request
from flask_login import login_required

from webapp.clock import app_clock, local_today
from webapp.extensions import db
from webapp.therapist_lists import PER_PAGE, search_therapists
from webapp.web.dashboard import render_view

therapists = Blueprint("therapists", __name__)


@therapists.route("/therapeuten")
@login_required
def directory():
    """List therapists by name, filtered by a search as the user types."""
    query = request.args.get("q", "")[:100]
    page = max(request.args.get("page", 1, type=int), 1)
    rows, total = search_therapists(db.session, query, page)
    return render_view(
        "therapists/directory.html",
        "therapists/_results.html",
        rows=rows,
        total=total,
        query=query,
        page_number=page,
        pages=max((total + PER_PAGE - 1) // PER_PAGE, 1),
        today=local_today(app_clock()),
    )
