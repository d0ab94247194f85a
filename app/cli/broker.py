"""`amr broker`: the project-local Mosquitto, or the broker in AMR_MQTT_URL."""

from __future__ import annotations

import typer
from rich.table import Table

from amr.errors import ServiceError
from app.cli.context import console, local_broker, settings

app = typer.Typer(
    help="MQTT broker: start, stop and check Mosquitto (authentication and ACLs on).", no_args_is_help=True
)


@app.command()
def up() -> None:
    """Start the local Mosquitto with a generated config, password file and ACL."""
    broker = local_broker()
    if broker is None:
        console.print("AMR_MQTT_URL is set: using that broker, nothing to start")
        return
    started = broker.start()
    console.print(f"broker {'started' if started else 'already running'} on {broker.host}:{broker.port}")


@app.command()
def down() -> None:
    """Stop the local Mosquitto (persisted sessions and queued messages stay on disk)."""
    broker = local_broker()
    if broker is None:
        console.print("AMR_MQTT_URL is set: the project does not stop that broker")
        return
    console.print("broker stopped" if broker.stop() else "broker was not running")


@app.command()
def status() -> None:
    """Whether the broker answers, refuses anonymous clients, and enforces the ACL."""
    from amr.broker.mosquitto import broker_endpoint
    from amr.broker.probe import fetch_connect_result, fetch_publish_result  # paho
    from amr.broker.topics import ACL
    from amr.credentials import read_or_create_credentials

    s = settings()
    creds = read_or_create_credentials(s.credentials_file)
    ep = broker_endpoint(s, creds, "collector")
    anonymous = fetch_connect_result(ep.host, ep.port)
    authed = fetch_connect_result(ep.host, ep.port, ep.username, ep.password)
    table = Table(title=f"broker {ep.host}:{ep.port}", show_header=False)
    table.add_row("server", "external (AMR_MQTT_URL)" if s.mqtt.url else "local mosquitto")
    table.add_row("anonymous client", "refused: " + anonymous if anonymous != "Success" else "[red]ACCEPTED[/red]")
    table.add_row(f"account {ep.username!r}", authed)
    if authed == "Success" and not s.mqtt.url:
        denied = fetch_publish_result(ep.host, ep.port, ep.username, ep.password, "amr/v1/not-a-collector-topic")
        table.add_row("collector publishing outside its topics", denied)
    table.add_row("accounts", ", ".join(ACL))
    console.print(table)
    if authed != "Success":
        raise ServiceError(f"broker at {ep.host}:{ep.port} did not accept the {ep.username!r} account: {authed}")
