"""Drives `ocm mcp` with the official Python MCP SDK (1.x or 2.x).

Run with the Python of a venv holding the SDK (`cargo xtask mcp-clients`):

    python py_client.py --ocm BIN --project DIR [--mode auto|legacy]
                        [--url http://127.0.0.1:PORT/mcp --token-env NAME] [--keep]

Lists the tools, then calls opencode_start (with a progress callback),
opencode_status, opencode_prompt and opencode_stop on DIR, and prints one JSON object on
stdout: the SDK version, the negotiated protocol version, the tool names,
each call's result and the progress seen. The end-to-end test checks it.
With --keep, opencode_stop is not called (the server keeps running).
"""

import argparse
import asyncio
import json
import os
import sys
from importlib.metadata import version as package_version

SDK = package_version("mcp")
MAJOR = int(SDK.split(".")[0])


def field(obj, *names, default=None):
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def summary(result):
    content = field(result, "content", default=[])
    return {
        "isError": bool(field(result, "is_error", "isError", default=False)),
        "structured": field(result, "structured_content", "structuredContent"),
        "text": content[0].text if content else None,
    }


async def exercise(call, list_tools, project, keep=False):
    tools = await list_tools()
    names = [tool.name for tool in tools.tools]
    progress = []

    async def on_progress(value, total, message):
        progress.append({"progress": value, "message": message})

    start = await call("opencode_start", {"project": project}, on_progress)
    status = await call("opencode_status", {"project": project}, None)
    prompt = await call(
        "opencode_prompt", {"project": project, "text": "hello from python"}, None
    )
    out = {
        "tools": names,
        "start": summary(start),
        "status": summary(status),
        "prompt": summary(prompt),
        "progress": progress,
    }
    if not keep:
        stop = await call("opencode_stop", {"project": project}, None)
        out["stop"] = summary(stop)
    return out


async def run_v2(args):
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    if args.url:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        headers = {"Authorization": f"Bearer {os.environ[args.token_env]}"}
        http = httpx2.AsyncClient(headers=headers, timeout=60)
        server = streamable_http_client(args.url, http_client=http)
    else:
        server = StdioServerParameters(command=args.ocm, args=["mcp"], env=dict(os.environ))
    async with Client(server, mode=args.mode) as client:

        async def call(name, arguments, on_progress):
            return await client.call_tool(name, arguments, progress_callback=on_progress)

        out = await exercise(call, client.list_tools, args.project, args.keep)
        out["protocolVersion"] = client.protocol_version
        return out


async def run_v1(args):
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    if args.url:
        from mcp.client.streamable_http import streamablehttp_client

        headers = {"Authorization": f"Bearer {os.environ[args.token_env]}"}
        transport = streamablehttp_client(args.url, headers=headers)
    else:
        params = StdioServerParameters(command=args.ocm, args=["mcp"], env=dict(os.environ))
        transport = stdio_client(params)
    async with transport as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            init = await session.initialize()

            async def call(name, arguments, on_progress):
                return await session.call_tool(name, arguments, progress_callback=on_progress)

            out = await exercise(call, session.list_tools, args.project, args.keep)
            out["protocolVersion"] = init.protocolVersion
            return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ocm", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--url")
    parser.add_argument("--token-env")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    runner = run_v2 if MAJOR >= 2 else run_v1
    out = asyncio.run(runner(args))
    out["sdk"] = SDK
    print(json.dumps(out, default=str))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
