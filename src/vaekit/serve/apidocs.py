"""The API page at /docs: the OpenAPI schema as plain HTML, made here from `app.openapi()`.

FastAPI's own /docs page loads Swagger UI from a CDN; this one needs nothing from outside
the package (the page's stylesheet only), so it works offline and under the page's
Content-Security-Policy.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any


def docs_page(schema: dict[str, Any], token_query: str = "") -> str:
    """Every endpoint (method, path, summary, parameters, body model), then the body models.

    token_query: "?token=..." for the link to /openapi.json when the server has a token."""
    info = schema.get("info", {})
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(info.get('title', 'API'))}: API</title>",
        '<link rel="stylesheet" href="/static/style.css"></head><body class="api-docs">',
        f"<h1>{escape(info.get('title', 'API'))}: the JSON API</h1>",
        f"<p>{escape(info.get('description', ''))}</p>",
        f'<p>The schema: <a href="/openapi.json{escape(token_query)}">/openapi.json</a>. '
        "Bad input is a 4xx with a one-line <code>detail</code>.</p>",
    ]
    for path, operations in schema.get("paths", {}).items():
        for method, op in operations.items():
            parts.append(endpoint(method, path, op))
    models = schema.get("components", {}).get("schemas", {})
    parts.append("<h2>Request bodies</h2>")
    for name, model in models.items():
        if name in ("HTTPValidationError", "ValidationError"):
            continue
        text = json.dumps(model, indent=2)
        parts.append(f'<h3 id="{escape(name)}">{escape(name)}</h3><pre>{escape(text)}</pre>')
    parts.append("</body></html>")
    return "\n".join(parts)


def endpoint(method: str, path: str, op: dict[str, Any]) -> str:
    """One endpoint as a heading, its summary, its query parameters and its body model."""
    lines = [
        f"<h2><code>{escape(method.upper())} {escape(path)}</code></h2>",
        f"<p>{escape(op.get('summary', ''))}</p>",
    ]
    params = op.get("parameters", [])
    if params:
        items = "".join(
            f"<li><code>{escape(p['name'])}</code> ({escape(p.get('in', 'query'))}): "
            f"{escape(json.dumps(p.get('schema', {})))}</li>"
            for p in params
        )
        lines.append(f"<ul>{items}</ul>")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = body.get("schema", {}).get("$ref", "")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        lines.append(f'<p>JSON body: <a href="#{escape(name)}">{escape(name)}</a></p>')
    return "\n".join(lines)
