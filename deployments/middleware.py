"""GitHub failures become pages in one place, whichever view met them."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import gh, views


class GitHubErrorMiddleware:
    """Renders a ``GitHubError`` raised by a view as the error page, with the status it carries
    (and the request it concerns, when the service attached one)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, gh.GitHubError):
            return views.github_error_page(request, exception)
        return None
