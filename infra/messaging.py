"""Topics and queues made as template.yaml makes them (FIFO where it says), and queues subscribed to topics.

The deploy creates the real ones from the template; tests, benches and the demo's alert watcher need
the same kinds under names of their own, and an SQS queue subscribed to a topic (a FIFO topic delivers
only to SQS, and keeps its deduplication only into a FIFO queue).
"""

from __future__ import annotations

import json
from typing import Any

from infra.template import load_template, resources_of_type

FIFO_SUFFIX = ".fifo"


def _properties(resource_type: str, logical_id: str) -> dict[str, Any]:
    resource = resources_of_type(load_template(), resource_type)[logical_id]
    properties: dict[str, Any] = resource.get("Properties", {})
    return properties


def create_topic(sns: Any, logical_id: str, name: str) -> str:
    """A topic named `name` of the template's kind for `logical_id`; its ARN."""
    if _properties("AWS::SNS::Topic", logical_id).get("FifoTopic"):
        return str(sns.create_topic(Name=name + FIFO_SUFFIX, Attributes={"FifoTopic": "true"})["TopicArn"])
    return str(sns.create_topic(Name=name)["TopicArn"])


def create_queue(sqs: Any, logical_id: str, name: str) -> str:
    """A queue named `name` of the template's kind for `logical_id`; its URL."""
    return _queue(sqs, name, fifo=bool(_properties("AWS::SQS::Queue", logical_id).get("FifoQueue")))


def subscribe_queue(sns: Any, sqs: Any, topic_arn: str, name: str) -> str:
    """A new queue subscribed to the topic with raw delivery (one message per alert); its URL.

    FIFO when the topic is: SNS hands a FIFO queue the publish's deduplication id, so an alert
    published twice within five minutes is received once.
    """
    url = _queue(sqs, name, fifo=topic_arn.endswith(FIFO_SUFFIX))
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # On AWS, SNS may send to a queue only when the queue's policy lets this topic do so.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    return url


def _queue(sqs: Any, name: str, *, fifo: bool) -> str:
    attributes = {"SqsManagedSseEnabled": "true"}  # encrypted at rest, as the template's queues
    if fifo:
        attributes["FifoQueue"] = "true"
        return str(sqs.create_queue(QueueName=name + FIFO_SUFFIX, Attributes=attributes)["QueueUrl"])
    return str(sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
