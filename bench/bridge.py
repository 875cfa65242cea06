"""MQTT -> InfluxDB v2 bridge written the way its users write it: paho-mqtt
subscribes to the Tasmota topics with QoS 1, each message becomes points, and
influxdb-client's batching write API sends them (batch of 5,000 points or every
second, whichever comes first). paho acknowledges a message as soon as the
callback returns, i.e. before the store has the points (the usual shape).

Usage: bridge.py MQTT_HOST MQTT_PORT STORE_URL
"""

import json
import signal
import sys
from datetime import datetime, timedelta, timezone

import paho.mqtt.client as mqtt
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import WriteOptions

HANOI = timezone(timedelta(hours=7))
NAMES = {
    "Temperature": "temperature",
    "Humidity": "relativeHumidity",
    "Pressure": "pressure",
    "PM2.5": "pm25",
    "PM10": "pm10",
    "PM1": "pm1",
    "CarbonDioxide": "co2",
    "CO2": "co2",
    "Noise": "LAeq",
}

host, port, store = sys.argv[1], int(sys.argv[2]), sys.argv[3]
influx = InfluxDBClient(url=store, token="bench", org="city")
write_api = influx.write_api(
    write_options=WriteOptions(batch_size=5000, flush_interval=1000)
)


def on_message(_client, _userdata, msg):
    device = msg.topic.split("/")[1]
    try:
        data = json.loads(msg.payload)
        ts = datetime.strptime(data["Time"], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=HANOI)
    except (ValueError, KeyError):
        return
    points = []
    for sensor in data.values():
        if not isinstance(sensor, dict):
            continue
        for field, value in sensor.items():
            name = NAMES.get(field)
            if name is not None and isinstance(value, (int, float)):
                points.append(
                    Point(name).tag("device", device).field("value", float(value)).time(ts, WritePrecision.S)
                )
    write_api.write(bucket="telemetry", record=points)


def on_connect(client, _userdata, _flags, _reason, _props):
    client.subscribe("tele/+/SENSOR", qos=1)


def stop(*_):
    write_api.close()  # flushes what is batched
    influx.close()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="python-bridge", clean_session=False)
client.max_inflight_messages_set(1000)
client.on_connect = on_connect
client.on_message = on_message
client.connect(host, port)
client.loop_forever()
