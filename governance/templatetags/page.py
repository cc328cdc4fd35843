"""The page frame's one tag: render a part of a template once and keep it as a variable.

base.html captures the page's `page_title` block this way, so one block written by each page
gives both the window title and the page's heading."""

from __future__ import annotations

from django import template
from django.utils.safestring import mark_safe

register = template.Library()


class CaptureNode(template.Node):
    def __init__(self, nodelist: template.NodeList, name: str) -> None:
        self.nodelist, self.name = nodelist, name

    def render(self, context) -> str:
        # Already rendered (and escaped) by the template itself.
        context[self.name] = mark_safe(self.nodelist.render(context).strip())
        return ""


@register.tag
def capture(parser, token) -> CaptureNode:
    """{% capture name %}…{% endcapture %}: the enclosed part, rendered, as the variable name."""
    bits = token.split_contents()
    if len(bits) != 2:
        raise template.TemplateSyntaxError("capture takes one variable name")
    nodelist = parser.parse(("endcapture",))
    parser.delete_first_token()
    return CaptureNode(nodelist, bits[1])
