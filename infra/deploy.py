"""Deploying template.yaml to an endpoint: the embedded emulator, LocalStack, or an AWS profile.

Like `sam deploy`, without Docker: the code and layers are zipped to an S3 bucket on the endpoint, the
SAM transform (aws-sam-translator) turns the template into plain CloudFormation, and CloudFormation
creates or updates the stack. Then every resource of the translated template is looked up through its
own service's API; one the endpoint skipped (moto's CloudFormation has no CloudWatch alarms and no
API Gateway v2, and drops a function's layers) is created through that API from the template's own
properties, and anything
else missing is an error naming it. Nothing here lists resources by name: all comes from the template.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fraudwatch.errors import FraudwatchError, UsageError
from infra.emulator import REGION, boto_session, client, is_moto
from infra.template import REPO_ROOT, TEMPLATE, load_template, resources_of_type

log = logging.getLogger("fraudwatch.deploy")

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
ESM_TYPE = "AWS::Lambda::EventSourceMapping"
# TemplateBody's limit; a larger template goes through S3 (TemplateURL).
MAX_TEMPLATE_BODY = 51_200
# The ML runtime (xgboost, numpy, scipy) is built by `sam build` for the Lambda platform and only
# matters where Lambda really runs the function. The emulator runs the handler in this process with
# the venv's own packages, so there the layer is a small stand-in that says so.
ML_RUNTIME_PLACEHOLDER = (
    "Placeholder for the ML runtime layer on the embedded emulator: the handler runs in process there, "
    "with the project's virtual environment. Build the real layer with `sam build` for LocalStack/AWS.\n"
)


class DeployError(FraudwatchError):
    """The stack could not be deployed, or a resource of the template is missing afterwards."""


# ---------------------------------------------------------------------------------------------- packaging


def _zip_tree(root: Path, prefix: str = "") -> bytes:
    """A deterministic zip of a directory (sorted entries, fixed timestamps), without caches."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(root.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            info = zipfile.ZipInfo(f"{prefix}{path.relative_to(root).as_posix()}", (1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def _zip_text(name: str, text: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def layer_archive(logical_id: str, content_dir: Path, *, in_process: bool) -> bytes:
    """A layer's zip, laid out as `sam build` would put it under /opt (python/, bundle/, ...).

    Where Lambda runs the function, `sam build`'s output is used when there is one (the ML runtime
    needs pip for the Lambda platform); where the handler runs in process (the emulator, or host mode),
    the sources as they are, or a placeholder where there are none.
    """
    built = REPO_ROOT / ".aws-sam" / "build" / logical_id
    if not in_process and built.is_dir():
        return _zip_tree(built)
    for subdir in ("python", "bundle"):
        if (content_dir / subdir).is_dir() and any((content_dir / subdir).iterdir()):
            return _zip_tree(content_dir / subdir, f"{subdir}/")
    if in_process:
        log.info("%s: a placeholder layer (the handler runs in process on the emulator)", logical_id)
        return _zip_text("python/FRAUDWATCH_PLACEHOLDER.txt", ML_RUNTIME_PLACEHOLDER)
    raise DeployError(f"{logical_id}: nothing to package in {content_dir}; run `sam build` first")


def package(
    sam: dict[str, Any], base: Path, s3: Any, bucket: str, *, in_process: bool = True
) -> dict[str, str]:
    """Upload code and layers to S3 and point the template at them; returns logical id -> S3 key."""
    keys = {}
    for logical_id, resource in sam["Resources"].items():
        kind, props = resource.get("Type"), resource.get("Properties", {})
        if kind == "AWS::Serverless::Function" and isinstance(props.get("CodeUri"), str):
            body, uri_key = _zip_tree(base / props["CodeUri"]), "CodeUri"
        elif kind == "AWS::Serverless::LayerVersion" and isinstance(props.get("ContentUri"), str):
            body = layer_archive(logical_id, base / props["ContentUri"], in_process=in_process)
            uri_key = "ContentUri"
        else:
            continue
        key = f"{logical_id}/{hashlib.sha256(body).hexdigest()}.zip"
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        props[uri_key] = {"Bucket": bucket, "Key": key}
        keys[logical_id] = key
    return keys


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    """Create the artifacts bucket unless it exists."""
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
        return
    except ClientError:
        pass
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})


# ---------------------------------------------------------------------------------------------- transform


class _LazyManagedPolicies:
    """AWS managed policy ARNs by name, read from the endpoint's IAM only if the translator asks.

    It asks only when a function names a managed policy by its name; template.yaml names none.
    """

    def __init__(self, iam: Any) -> None:
        self._iam = iam
        self._map: dict[str, str] | None = None

    def load(self) -> dict[str, str]:
        if self._map is None:
            from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader

            self._map = ManagedPolicyLoader(self._iam).load()
        return self._map


def translate(sam: dict[str, Any], parameters: Mapping[str, str], session: Any, iam: Any) -> dict[str, Any]:
    """The SAM template as plain CloudFormation (the AWS::Serverless-2016-10-31 transform)."""
    from samtranslator.model.exceptions import ExceptionWithMessage, InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    loader = _LazyManagedPolicies(iam)
    # It warns about its own unpublished usage metrics on every transform: noise for our users.
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    translator = Translator(None, Parser(), boto_session=session)
    try:
        translated: dict[str, Any] = translator.translate(
            sam, parameter_values=dict(parameters), get_managed_policy_map=loader.load
        )
    except InvalidDocumentException as exc:
        reasons = "; ".join(cause.message for cause in exc.causes)
        raise DeployError(f"the SAM transform failed: {reasons}") from exc
    except ExceptionWithMessage as exc:
        raise DeployError(f"the SAM transform failed: {exc.message}") from exc
    return translated


def drop_event_source_mappings(cfn: dict[str, Any]) -> list[str]:
    """Remove the Kinesis event-source mappings (the local runner plays their part); returns their ids."""
    dropped = [lid for lid, res in cfn["Resources"].items() if res.get("Type") == ESM_TYPE]
    for logical_id in dropped:
        del cfn["Resources"][logical_id]
    for resource in cfn["Resources"].values():
        depends = resource.get("DependsOn")
        if isinstance(depends, list):
            resource["DependsOn"] = [d for d in depends if d not in dropped]
        elif depends in dropped:
            del resource["DependsOn"]
    return dropped


def references(value: Any) -> set[str]:
    """The logical ids and parameters a piece of template refers to (Ref, GetAtt, Sub)."""
    import re

    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else str(arg).split(".", 1)[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^!}][^}]*)\}", text)}
                found |= references(arg[1:] if isinstance(arg, list) else [])
            else:
                found |= references(arg)
    return found


def moto_supports(resource_type: str) -> bool:
    """Whether moto's CloudFormation creates this type (it skips the others, or fails on references)."""
    from moto.cloudformation.parsing import NULL_MODELS, get_model_map

    if resource_type in NULL_MODELS:
        return False
    return resource_type.startswith("Custom::") or resource_type in get_model_map()


def key_policies_as_text(cfn: dict[str, Any], resolve: Callable[[Any], Any]) -> None:
    """Give KMS key policies as resolved JSON text, which CloudFormation accepts too.

    moto keeps a policy given as an object and then fails to parse it on every DescribeKey.
    """
    for resource in resources_of_type(cfn, "AWS::KMS::Key").values():
        properties = resource["Properties"]
        properties["KeyPolicy"] = json.dumps(resolve(properties["KeyPolicy"]))


def _no_get_att(logical_id: str, attribute: str) -> Any:
    raise DeployError(f"!GetAtt {logical_id}.{attribute}: not known before the stack exists")


def defer_unsupported(cfn: dict[str, Any], supported: Callable[[str], bool]) -> dict[str, Any]:
    """A copy of the template without the resources CloudFormation there cannot create, nor what uses them.

    They are created through their own APIs once the stack exists (see `reconcile`).
    """
    import copy

    resources = cfn["Resources"]
    deferred = {lid for lid, res in resources.items() if not supported(res["Type"])}
    while True:
        dependents = {
            lid
            for lid, res in resources.items()
            if lid not in deferred and (references(res) | set(_as_list(res.get("DependsOn")))) & deferred
        }
        if not dependents:
            break
        deferred |= dependents
    applied = copy.deepcopy(cfn)
    for logical_id in sorted(deferred):
        log.info(
            "%s (%s): created through its API after the stack", logical_id, resources[logical_id]["Type"]
        )
        del applied["Resources"][logical_id]
    applied["Outputs"] = {
        key: out for key, out in cfn.get("Outputs", {}).items() if not references(out) & deferred
    }
    return applied


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------------------------- intrinsics


class Resolver:
    """Evaluates intrinsic functions against a deployed stack: parameters, physical ids, attributes."""

    def __init__(
        self,
        cfn: dict[str, Any],
        parameters: Mapping[str, str],
        pseudo: Mapping[str, str],
        refs: dict[str, str],
        get_att: Callable[[str, str], Any],
    ) -> None:
        defaults = {k: str(v.get("Default", "")) for k, v in cfn.get("Parameters", {}).items()}
        self.values: dict[str, Any] = {**defaults, **parameters, **pseudo}
        self.refs = refs
        self.conditions = cfn.get("Conditions", {})
        self._get_att = get_att

    def __call__(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self(item) for item in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((name, arg),) = value.items()
            if name == "Ref" or name.startswith("Fn::"):
                return self._function(name, arg)
        return {k: v for k, v in ((k, self(v)) for k, v in value.items()) if v is not _NO_VALUE}

    def condition(self, name: str) -> bool:
        """Evaluate one of the template's named conditions."""
        return bool(self(self.conditions[name]))

    def _function(self, name: str, arg: Any) -> Any:
        match name:
            case "Ref":
                return self._ref(arg)
            case "Fn::GetAtt":
                resource, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(resource, attribute)
            case "Fn::Sub":
                return self._sub(arg)
            case "Fn::Join":
                return str(arg[0]).join(str(v) for v in self(arg[1]))
            case "Fn::Select":
                return self(arg[1])[int(self(arg[0]))]
            case "Fn::Split":
                return str(self(arg[1])).split(arg[0])
            case "Fn::If":
                return self(arg[1] if self.condition(arg[0]) else arg[2])
            case "Fn::Equals":
                return str(self(arg[0])) == str(self(arg[1]))
            case "Fn::Not":
                return not self(arg[0])
            case "Fn::And":
                return all(self(v) for v in arg)
            case "Fn::Or":
                return any(self(v) for v in arg)
            case "Condition":
                return self.condition(arg)
        raise DeployError(f"cannot resolve {name} here")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.values:
            return self.values[name]
        if name in self.refs:
            return self.refs[name]
        raise DeployError(f"!Ref {name}: no such parameter or resource in the deployed stack")

    def _sub(self, arg: Any) -> str:
        import re

        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], self(arg[1]))

        def replace(match: re.Match[str]) -> str:
            token = match.group(1)
            if token.startswith("!"):
                return "${" + token[1:] + "}"
            if token in local:
                return str(local[token])
            if "." in token and not token.startswith("AWS::"):
                resource, attribute = token.split(".", 1)
                return str(self._get_att(resource, attribute))
            return str(self._ref(token))

        return re.sub(r"\$\{([^}]+)\}", replace, text)


_NO_VALUE: Any = object()


def coerce_to_shape(value: Any, shape: Any) -> Any:
    """Fit resolved template values to an API's input shape (CloudFormation passes numbers as text)."""
    kind = shape.type_name
    if kind == "structure":
        unknown = set(value) - set(shape.members)
        if unknown:
            raise DeployError(f"{shape.name}: the API has no {', '.join(sorted(unknown))}")
        return {k: coerce_to_shape(v, shape.members[k]) for k, v in value.items()}
    if kind == "list":
        return [coerce_to_shape(v, shape.member) for v in value]
    if kind in ("integer", "long"):
        return int(value)
    if kind in ("double", "float"):
        return float(value)
    if kind == "boolean":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if kind == "string":
        return str(value)
    return value


# ---------------------------------------------------------------------------------------------- resources


def _missing(exc: Exception) -> bool:
    """True when a service's error says "no such resource" (each service has its own code for it)."""
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = exc.response.get("Error", {}).get("Code", "")
    return any(word in code for word in ("NotFound", "NoSuch", "NonExistent", "DoesNotExist", "NotExist"))


@dataclass(frozen=True)
class Kind:
    """How to look up, and if need be create, one resource type through its service's API."""

    service: str
    describe: Callable[[Any, str], dict[str, Any]]
    create: Callable[[Any, dict[str, Any], str], str] | None = None


def _stream(kinesis: Any, name: str) -> dict[str, Any]:
    summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    return {"Arn": summary["StreamARN"], "Status": summary["StreamStatus"]}


def _table(dynamodb: Any, name: str) -> dict[str, Any]:
    table = dynamodb.describe_table(TableName=name)["Table"]
    return {
        "Arn": table["TableArn"],
        "StreamArn": table.get("LatestStreamArn", ""),
        "KeySchema": table["KeySchema"],
        "GlobalSecondaryIndexes": table.get("GlobalSecondaryIndexes", []),
    }


def _queue(sqs: Any, url: str) -> dict[str, Any]:
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return {"Arn": arn, "QueueName": arn.rsplit(":", 1)[-1], "QueueUrl": url}


def _topic(sns: Any, arn: str) -> dict[str, Any]:
    sns.get_topic_attributes(TopicArn=arn)
    return {"TopicArn": arn, "TopicName": arn.rsplit(":", 1)[-1]}


def _subscription(sns: Any, arn: str) -> dict[str, Any]:
    sns.get_subscription_attributes(SubscriptionArn=arn)
    return {"Arn": arn}


def _create_subscription(sns: Any, props: dict[str, Any], name: str) -> str:
    attributes = {
        key: _attribute(value)
        for key, value in props.items()
        if key not in ("TopicArn", "Protocol", "Endpoint", "Region")
    }
    return str(
        sns.subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props["Endpoint"],
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
    )


def _attribute(value: Any) -> str:
    """A subscription attribute as SNS takes it: booleans lower-case, a policy (FilterPolicy) as JSON."""
    if isinstance(value, bool):
        return str(value).lower()
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _queue_policy(sqs: Any, physical_id: str) -> dict[str, Any]:
    for url in physical_id.split("|"):
        if "Policy" not in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"]).get(
            "Attributes", {}
        ):
            raise LookupError(url)
    return {}


def _create_queue_policy(sqs: Any, props: dict[str, Any], name: str) -> str:
    """The policy set on each of its queues; its physical id, their URLs."""
    for url in props["Queues"]:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(props["PolicyDocument"])})
    return "|".join(props["Queues"])


def _rule(events: Any, name: str) -> dict[str, Any]:
    return {"Arn": events.describe_rule(Name=name.rsplit("/", 1)[-1])["Arn"]}


def _key(kms: Any, key_id: str) -> dict[str, Any]:
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    return {"Arn": metadata["Arn"], "KeyId": metadata["KeyId"]}


def _function(lambda_: Any, name: str) -> dict[str, Any]:
    config = lambda_.get_function_configuration(FunctionName=name)
    return {"Arn": config["FunctionArn"], "Layers": [layer["Arn"] for layer in config.get("Layers", [])]}


def _layer(lambda_: Any, arn: str) -> dict[str, Any]:
    # arn:aws:lambda:<region>:<account>:layer:<name>:<version>; moto has no GetLayerVersionByArn.
    layer_arn, _, version = arn.rpartition(":")
    found = lambda_.get_layer_version(LayerName=layer_arn, VersionNumber=int(version))
    return {"Arn": found["LayerVersionArn"], "LayerName": layer_arn.rsplit(":", 1)[-1]}


def _role(iam: Any, name: str) -> dict[str, Any]:
    role = iam.get_role(RoleName=name)["Role"]
    return {"Arn": role["Arn"], "RoleId": role["RoleId"]}


def _bucket(s3: Any, name: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:  # HeadBucket has no body: its code is the bare status, 404
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
            raise LookupError(name) from exc
        raise
    return {"Arn": f"arn:aws:s3:::{name}", "BucketName": name}


def _log_group(logs: Any, name: str) -> dict[str, Any]:
    groups = logs.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
    match = [g for g in groups if g["logGroupName"] == name]
    if not match:
        raise LookupError(name)
    return {"Arn": match[0]["arn"]}


def _alarm(cloudwatch: Any, name: str) -> dict[str, Any]:
    alarms = cloudwatch.describe_alarms(AlarmNames=[name])
    found = alarms["MetricAlarms"] + alarms["CompositeAlarms"]
    if not found:
        raise LookupError(name)
    return {"Arn": found[0]["AlarmArn"]}


def _create_alarm(cloudwatch: Any, props: dict[str, Any], name: str) -> str:
    params = {"AlarmName": name, **props}
    shape = cloudwatch.meta.service_model.operation_model("PutMetricAlarm").input_shape
    cloudwatch.put_metric_alarm(**coerce_to_shape(params, shape))
    return str(params["AlarmName"])


def _dashboard(cloudwatch: Any, name: str) -> dict[str, Any]:
    return {"Arn": cloudwatch.get_dashboard(DashboardName=name)["DashboardArn"]}


def _create_dashboard(cloudwatch: Any, props: dict[str, Any], name: str) -> str:
    params = {"DashboardName": name, **props}
    cloudwatch.put_dashboard(**params)
    return str(params["DashboardName"])


def _create_layer(lambda_: Any, props: dict[str, Any], name: str) -> str:
    params = {"LayerName": name, **props}
    params.pop("RetentionPolicy", None)
    same = _published_with_same_code(lambda_, params["LayerName"], params.get("Content", {}))
    if same:
        return same
    shape = lambda_.meta.service_model.operation_model("PublishLayerVersion").input_shape
    return str(lambda_.publish_layer_version(**coerce_to_shape(params, shape))["LayerVersionArn"])


def _published_with_same_code(lambda_: Any, layer_name: str, content: Mapping[str, str]) -> str | None:
    """The layer's latest version ARN when it already holds this code (a redeploy publishes nothing)."""
    import base64

    # `package` names each archive by the SHA-256 of its bytes; Lambda reports it base64-encoded.
    digest = Path(content.get("S3Key", "")).stem
    try:
        code_sha = base64.b64encode(bytes.fromhex(digest)).decode()
    except ValueError:
        return None
    versions = lambda_.list_layer_versions(LayerName=layer_name).get("LayerVersions", [])
    if not versions:
        return None
    latest = max(versions, key=lambda v: v["Version"])
    found = lambda_.get_layer_version(LayerName=layer_name, VersionNumber=latest["Version"])
    return str(latest["LayerVersionArn"]) if found["Content"].get("CodeSha256") == code_sha else None


def _mapping(lambda_: Any, uuid: str) -> dict[str, Any]:
    return {"Arn": lambda_.get_event_source_mapping(UUID=uuid)["EventSourceMappingArn"]}


def _http_api(apigatewayv2: Any, api_id: str) -> dict[str, Any]:
    api = apigatewayv2.get_api(ApiId=api_id)
    return {"ApiId": api["ApiId"], "ApiEndpoint": api.get("ApiEndpoint", "")}


def _create_http_api(apigatewayv2: Any, props: dict[str, Any], name: str) -> str:
    """An HTTP API from its OpenAPI body (routes, integrations, IAM authorisation); a redeploy reimports."""
    tag = {"fraudwatch:logical-id": name}
    existing = [a for a in apigatewayv2.get_apis()["Items"] if a.get("Tags") == tag]
    if existing:
        api_id = str(existing[0]["ApiId"])
    else:
        api_id = str(apigatewayv2.create_api(Name=name, ProtocolType="HTTP", Tags=tag)["ApiId"])
    body = props["Body"]
    apigatewayv2.reimport_api(ApiId=api_id, Body=json.dumps(body))
    # moto imports the routes but not their authorisation: set what the body's security asks for.
    sigv4 = {
        name
        for name, scheme in body.get("components", {}).get("securitySchemes", {}).items()
        if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4"
    }
    for route in apigatewayv2.get_routes(ApiId=api_id)["Items"]:
        method, _, path = route["RouteKey"].partition(" ")
        security = body.get("paths", {}).get(path, {}).get(method.lower(), {}).get("security", [])
        if any(sigv4 & set(requirement) for requirement in security):
            apigatewayv2.update_route(ApiId=api_id, RouteId=route["RouteId"], AuthorizationType="AWS_IAM")
    return api_id


def _api_stage(apigatewayv2: Any, physical_id: str) -> dict[str, Any]:
    api_id, _, stage_name = physical_id.partition("/")
    stage = apigatewayv2.get_stage(ApiId=api_id, StageName=stage_name)
    return {"StageName": stage["StageName"]}


def _create_api_stage(apigatewayv2: Any, props: dict[str, Any], name: str) -> str:
    physical_id = f"{props['ApiId']}/{props['StageName']}"
    try:
        _api_stage(apigatewayv2, physical_id)
    except Exception as exc:
        if not _missing(exc):
            raise
        shape = apigatewayv2.meta.service_model.operation_model("CreateStage").input_shape
        apigatewayv2.create_stage(**coerce_to_shape(props, shape))
    return physical_id


def _permission(lambda_: Any, physical_id: str) -> dict[str, Any]:
    function, _, sid = physical_id.partition("|")
    statements = json.loads(lambda_.get_policy(FunctionName=function)["Policy"]).get("Statement", [])
    if not any(s.get("Sid") == sid for s in statements):
        raise LookupError(physical_id)
    return {}


def _create_permission(lambda_: Any, props: dict[str, Any], name: str) -> str:
    physical_id = f"{props['FunctionName']}|{name}"
    try:
        _permission(lambda_, physical_id)
    except LookupError:
        lambda_.add_permission(StatementId=name, **props)
    except Exception as exc:
        if not _missing(exc):
            raise
        lambda_.add_permission(StatementId=name, **props)
    return physical_id


def _version(lambda_: Any, arn: str) -> dict[str, Any]:
    config = lambda_.get_function_configuration(FunctionName=arn)
    return {"Version": config["Version"], "Arn": config["FunctionArn"]}


def _publish_version(lambda_: Any, props: dict[str, Any], name: str) -> str:
    """A published version of the function (AutoPublishAlias) where the endpoint made none."""
    params = {k: v for k, v in props.items() if k in ("FunctionName", "Description", "CodeSha256")}
    return str(lambda_.publish_version(**params)["FunctionArn"])


def _alias(lambda_: Any, arn: str) -> dict[str, Any]:
    function, _, name = arn.rpartition(":")
    alias = lambda_.get_alias(FunctionName=function, Name=name)
    return {"Arn": alias["AliasArn"], "Name": alias["Name"]}


def _create_alias(lambda_: Any, props: dict[str, Any], name: str) -> str:
    """The alias (AutoPublishAlias) on the published version; a redeploy points it at the new one."""
    from botocore.exceptions import ClientError

    target = {"FunctionName": props["FunctionName"], "Name": props["Name"]}
    try:
        lambda_.get_alias(**target)
    except ClientError as exc:
        if not _missing(exc):
            raise
        return str(lambda_.create_alias(**target, FunctionVersion=str(props["FunctionVersion"]))["AliasArn"])
    return str(lambda_.update_alias(**target, FunctionVersion=str(props["FunctionVersion"]))["AliasArn"])


KINDS: dict[str, Kind] = {
    "AWS::Kinesis::Stream": Kind("kinesis", _stream),
    "AWS::DynamoDB::Table": Kind("dynamodb", _table),
    "AWS::S3::Bucket": Kind("s3", _bucket),
    "AWS::SQS::Queue": Kind("sqs", _queue),
    "AWS::SNS::Topic": Kind("sns", _topic),
    "AWS::SNS::Subscription": Kind("sns", _subscription, _create_subscription),
    "AWS::KMS::Key": Kind("kms", _key),
    "AWS::Lambda::Function": Kind("lambda", _function),
    "AWS::Lambda::LayerVersion": Kind("lambda", _layer, _create_layer),
    "AWS::Lambda::EventSourceMapping": Kind("lambda", _mapping),
    "AWS::IAM::Role": Kind("iam", _role),
    "AWS::Logs::LogGroup": Kind("logs", _log_group),
    "AWS::CloudWatch::Alarm": Kind("cloudwatch", _alarm, _create_alarm),
    "AWS::CloudWatch::Dashboard": Kind("cloudwatch", _dashboard, _create_dashboard),
    "AWS::ApiGatewayV2::Api": Kind("apigatewayv2", _http_api, _create_http_api),
    "AWS::ApiGatewayV2::Stage": Kind("apigatewayv2", _api_stage, _create_api_stage),
    "AWS::Lambda::Permission": Kind("lambda", _permission, _create_permission),
    "AWS::Lambda::Version": Kind("lambda", _version, _publish_version),
    "AWS::Lambda::Alias": Kind("lambda", _alias, _create_alias),
    "AWS::SQS::QueuePolicy": Kind("sqs", _queue_policy, _create_queue_policy),
    "AWS::Events::Rule": Kind("events", _rule),
}


class Stack:
    """A deployed stack seen through the service APIs: physical ids, attributes, and what is missing."""

    def __init__(self, cfn: dict[str, Any], name: str, endpoint_url: str | None, region: str) -> None:
        self.cfn, self.name, self.endpoint_url, self.region = cfn, name, endpoint_url, region
        self._clients: dict[str, Any] = {}
        self._described: dict[str, dict[str, Any]] = {}
        self.refs: dict[str, str] = {}

    def client(self, service: str) -> Any:
        """One client per service, on the stack's endpoint."""
        if service not in self._clients:
            self._clients[service] = client(service, self.endpoint_url, self.region)
        return self._clients[service]

    def describe(self, logical_id: str) -> dict[str, Any] | None:
        """A resource's attributes through its own API, or None when the endpoint does not have it."""
        if logical_id in self._described:
            return self._described[logical_id]
        kind = self._kind(logical_id)
        physical_id = self.refs.get(logical_id)
        if not physical_id:
            return None
        try:
            attributes = kind.describe(self.client(kind.service), physical_id)
        except LookupError:
            return None
        except Exception as exc:
            if _missing(exc):
                return None
            raise
        self._described[logical_id] = attributes
        return attributes

    def get_att(self, logical_id: str, attribute: str) -> Any:
        """Fn::GetAtt through the service API."""
        attributes = self.describe(logical_id)
        if attributes is None or attribute not in attributes:
            raise DeployError(f"!GetAtt {logical_id}.{attribute}: not available on the endpoint")
        return attributes[attribute]

    def create(self, logical_id: str, properties: dict[str, Any]) -> None:
        """Create a resource the endpoint's CloudFormation skipped, through its own API."""
        kind = self._kind(logical_id)
        if kind.create is None:
            raise DeployError(f"{logical_id} ({self._type(logical_id)}) is missing after the deploy")
        physical_id = kind.create(self.client(kind.service), properties, f"{self.name}-{logical_id}")
        self.refs[logical_id] = physical_id
        self._described.pop(logical_id, None)
        log.info(
            "created %s (%s) through its API: the endpoint skipped it", logical_id, self._type(logical_id)
        )

    def _type(self, logical_id: str) -> str:
        return str(self.cfn["Resources"][logical_id]["Type"])

    def _kind(self, logical_id: str) -> Kind:
        resource_type = self._type(logical_id)
        if resource_type not in KINDS:
            raise DeployError(f"{logical_id}: no way to check a {resource_type} exists; teach deploy.KINDS")
        return KINDS[resource_type]


# ---------------------------------------------------------------------------------------------- deploy


def _stack_exists(cloudformation: Any, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except ClientError:
        return False
    return any(s["StackStatus"] not in ("DELETE_COMPLETE", "ROLLBACK_COMPLETE") for s in stacks)


def apply_stack(
    cloudformation: Any, s3: Any, bucket: str, name: str, cfn: dict[str, Any], parameters: Mapping[str, str]
) -> None:
    """Create or update the stack from a translated template and wait for it."""

    from botocore.exceptions import ClientError, WaiterError

    body = json.dumps(cfn)
    source: dict[str, str] = {"TemplateBody": body}
    if len(body) > MAX_TEMPLATE_BODY:
        key = f"templates/{name}-{hashlib.sha256(body.encode()).hexdigest()}.json"
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode())
        source = {
            "TemplateURL": s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
        }
    params = [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()]
    common = {"StackName": name, "Parameters": params, "Capabilities": CAPABILITIES, **source}
    waiter_config = {"Delay": 2, "MaxAttempts": 600}
    try:
        if _stack_exists(cloudformation, name):
            try:
                cloudformation.update_stack(**common)
            except ClientError as exc:
                if "No updates are to be performed" in str(exc):
                    return
                raise
            cloudformation.get_waiter("stack_update_complete").wait(
                StackName=name, WaiterConfig=waiter_config
            )
        else:
            cloudformation.create_stack(**common)
            cloudformation.get_waiter("stack_create_complete").wait(
                StackName=name, WaiterConfig=waiter_config
            )
    except (ClientError, WaiterError) as exc:
        raise DeployError(f"stack {name}: {exc}{_failure_reasons(cloudformation, name)}") from exc


def _failure_reasons(cloudformation: Any, name: str) -> str:
    try:
        events = cloudformation.describe_stack_events(StackName=name)["StackEvents"]
    except Exception:  # the reasons are a courtesy; the error itself is already being raised
        return ""
    reasons = [
        f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}"
        for e in events
        if e.get("ResourceStatus", "").endswith("FAILED")
    ]
    return ("; " + "; ".join(reasons[:5])) if reasons else ""


def reconcile(stack: Stack, resolver: Resolver) -> list[str]:
    """Check every resource of the template exists; create those the endpoint skipped. Returns their ids."""
    created = []
    pending = [lid for lid, res in stack.cfn["Resources"].items() if _wanted(res, resolver)]
    # Skipped resources may refer to each other (a dashboard lists the alarms): retry until no progress.
    while pending:
        progress, blocked = False, []
        for logical_id in pending:
            if stack.describe(logical_id) is not None:
                progress = True
                continue
            try:
                properties = resolver(stack.cfn["Resources"][logical_id].get("Properties", {}))
            except DeployError:
                blocked.append(logical_id)
                continue
            stack.create(logical_id, properties)
            if stack.describe(logical_id) is None:
                raise DeployError(f"{logical_id}: created through its API but still not found")
            created.append(logical_id)
            progress = True
        if not progress:
            raise DeployError(f"missing after the deploy and cannot be created: {', '.join(blocked)}")
        pending = blocked
    return created


def _wanted(resource: dict[str, Any], resolver: Resolver) -> bool:
    condition = resource.get("Condition")
    return condition is None or resolver.condition(condition)


def attach_layers(stack: Stack, resolver: Resolver) -> list[str]:
    """Give each function the layers the template names (moto's CloudFormation drops them)."""
    fixed = []
    for logical_id, resource in stack.cfn["Resources"].items():
        if resource["Type"] != "AWS::Lambda::Function" or not _wanted(resource, resolver):
            continue
        wanted = resolver(resource.get("Properties", {}).get("Layers", []))
        attributes = stack.describe(logical_id) or {}
        if wanted and attributes.get("Layers") != wanted:
            stack.client("lambda").update_function_configuration(
                FunctionName=stack.refs[logical_id], Layers=wanted
            )
            log.info(
                "%s: attached its %d layers through the API: the endpoint dropped them",
                logical_id,
                len(wanted),
            )
            fixed.append(logical_id)
    return fixed


def configure_buckets(stack: Stack, resolver: Resolver) -> list[str]:
    """Give each bucket the versioning and public access block the template states (moto's
    CloudFormation creates the bucket with its encryption but ignores both)."""
    fixed = []
    for logical_id, resource in stack.cfn["Resources"].items():
        if resource["Type"] != "AWS::S3::Bucket" or not _wanted(resource, resolver):
            continue
        props, s3, bucket = (
            resolver(resource.get("Properties", {})),
            stack.client("s3"),
            stack.refs[logical_id],
        )
        versioning = props.get("VersioningConfiguration", {}).get("Status")
        if versioning and s3.get_bucket_versioning(Bucket=bucket).get("Status") != versioning:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning})
            fixed.append(logical_id)
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
    for logical_id in fixed:
        log.info("%s: versioning set through the API: the endpoint ignored it", logical_id)
    return fixed


def check_tables(stack: Stack, resolver: Resolver) -> None:
    """Every table's key schema and global indexes are the template's."""
    for logical_id, resource in stack.cfn["Resources"].items():
        if resource["Type"] != "AWS::DynamoDB::Table":
            continue
        props = resolver(resource["Properties"])
        actual = stack.get_att(logical_id, "KeySchema")
        if actual != props["KeySchema"]:
            raise DeployError(f"{logical_id}: key schema {actual} is not the template's {props['KeySchema']}")
        indexes = {
            i["IndexName"]: i["KeySchema"] for i in stack.get_att(logical_id, "GlobalSecondaryIndexes")
        }
        for index in props.get("GlobalSecondaryIndexes", []):
            if indexes.get(index["IndexName"]) != index["KeySchema"]:
                raise DeployError(f"{logical_id}: index {index['IndexName']} is not the template's")


def stack_outputs(stack: Stack, resolver: Resolver) -> dict[str, str]:
    """The template's outputs, resolved against the endpoint (CloudFormation's own where it has them)."""
    described = stack.client("cloudformation").describe_stacks(StackName=stack.name)["Stacks"][0]
    reported = {o["OutputKey"]: o.get("OutputValue", "") for o in described.get("Outputs", [])}
    outputs = {}
    for key, output in stack.cfn.get("Outputs", {}).items():
        if "Condition" in output and not resolver.condition(output["Condition"]):
            continue
        # Our own resolution wins: it sees the resources created after CloudFormation skipped them.
        outputs[key] = str(resolver(output["Value"])) or reported.get(key, "")
        if not outputs[key]:
            raise DeployError(f"output {key} does not resolve")
    return outputs


def physical_ids(cloudformation: Any, name: str) -> dict[str, str]:
    """Logical id -> physical id, as the stack reports them."""
    resources = cloudformation.describe_stack_resources(StackName=name)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if r.get("PhysicalResourceId")}


def deploy(
    endpoint_url: str | None,
    template: Path = TEMPLATE,
    stack_name: str = "fraudwatch",
    parameters: Mapping[str, str] | None = None,
    region: str = REGION,
    *,
    event_source_mappings: bool | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """Deploy the template to an endpoint (None: the AWS profile) and return the stack's outputs.

    `event_source_mappings=None` keeps them except on moto, whose mapping fires per record inside
    PutRecords; there the local runner plays their part.
    """
    from tqdm import tqdm

    parameters = dict(parameters or {})
    sam = load_template(template)
    check_parameters(sam, parameters)  # before any call: an unknown parameter is the caller's mistake
    emulated = endpoint_url is not None and is_moto(endpoint_url)
    keep_mappings = (not emulated) if event_source_mappings is None else event_source_mappings
    steps = tqdm(total=5, desc=f"deploy {stack_name}", unit="step", disable=not progress, leave=False)
    session = boto_session(endpoint_url, region)
    region = session.region_name or region
    s3, cloudformation = client("s3", endpoint_url, region), client("cloudformation", endpoint_url, region)
    account = client("sts", endpoint_url, region).get_caller_identity()["Account"]
    bucket = f"{stack_name}-artifacts-{account}-{region}"

    steps.set_postfix_str("package")
    ensure_bucket(s3, bucket, region)
    # Without the mapping, Lambda never runs the function there: the runner calls the handler in
    # process, so layers that need `sam build` (the ML runtime) may be stand-ins.
    package(sam, template.parent, s3, bucket, in_process=not keep_mappings)
    steps.update()

    steps.set_postfix_str("transform")
    cfn = translate(sam, parameters, session, client("iam", endpoint_url, region))
    if not keep_mappings:
        for logical_id in drop_event_source_mappings(cfn):
            log.info("%s: not deployed; the local event-source runner plays its part", logical_id)
    steps.update()

    steps.set_postfix_str("cloudformation")
    pseudo = {
        "AWS::Region": region,
        "AWS::AccountId": account,
        "AWS::StackName": stack_name,
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    applied = cfn
    if emulated:
        applied = defer_unsupported(cfn, moto_supports)
        key_policies_as_text(applied, Resolver(applied, parameters, pseudo, {}, _no_get_att))
    apply_stack(cloudformation, s3, bucket, stack_name, applied, parameters)
    steps.update()

    steps.set_postfix_str("check resources")
    stack = Stack(cfn, stack_name, endpoint_url, region)
    stack.refs.update(physical_ids(cloudformation, stack_name))
    resolver = Resolver(cfn, parameters, pseudo, stack.refs, stack.get_att)
    reconcile(stack, resolver)
    attach_layers(stack, resolver)
    configure_buckets(stack, resolver)
    check_tables(stack, resolver)
    steps.update()

    steps.set_postfix_str("outputs")
    outputs = stack_outputs(stack, resolver)
    if emulated and endpoint_url:
        outputs = {key: served_url(value, endpoint_url) for key, value in outputs.items()}
    steps.update()
    steps.close()
    return outputs


def served_url(value: str, endpoint_url: str) -> str:
    """A queue URL as the emulator serves it: moto's CloudFormation names queues on AWS's own host
    (https://sqs.<region>.amazonaws.com/...), which the AWS CLI would then call instead of the emulator."""
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname and parts.hostname.startswith("sqs."):
        return endpoint_url.rstrip("/") + parts.path
    return value


# ---------------------------------------------------------------------------------------------- command


def check_parameters(sam: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
    """ValueError naming a parameter the template does not declare: CloudFormation refuses one, and
    moto would deploy without it, silently."""
    declared = sorted(sam.get("Parameters") or {})
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(
            f"--parameter {', '.join(unknown)}: the template has no such parameter "
            f"(it has {', '.join(declared) or 'none'})"
        )


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    """`K=V` pairs into a dict; a pair without `=` is an error."""
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--parameter {pair!r}: expected KEY=VALUE")
        parameters[key] = value
    return parameters


def _deploy_command(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    if not Path(args.template).is_file():
        raise UsageError(f"no template at {args.template}: run from the repository root, or pass --template")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        parameters = parse_parameters(args.parameter)
        outputs = deploy(
            args.endpoint,
            Path(args.template),
            args.stack_name,
            parameters,
            args.region,
            event_source_mappings=False if args.no_event_source_mappings else None,
            progress=True,
        )
    except (ValueError, OSError) as exc:
        raise UsageError(str(exc)) from exc
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"{exc}; is the endpoint {args.endpoint or '(AWS)'} up?") from exc
    if args.outputs_file:
        # The shape `stack up --detach` writes: `fraudwatch produce/run/invoke --outputs` read it.
        state = {"endpoint": args.endpoint, "stack_name": args.stack_name, "outputs": outputs}
        Path(args.outputs_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.outputs_file).write_text(json.dumps(state, indent=2))
    print(json.dumps(outputs, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add `deploy`: the template to an endpoint, without Docker."""
    parser = subparsers.add_parser(
        "deploy",
        help="deploy template.yaml to an endpoint (emulator, LocalStack) or an AWS profile",
        description="Package the code and layers to S3, apply the SAM transform, create or update the "
        "CloudFormation stack, then check every resource of the template exists (creating through its "
        "API any the endpoint skipped) and print the stack's outputs as JSON.",
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("AWS_ENDPOINT_URL"),
        help="endpoint URL (default: $AWS_ENDPOINT_URL; none: real AWS with your profile)",
    )
    parser.add_argument("--stack-name", default="fraudwatch", help="stack name (default: fraudwatch)")
    parser.add_argument("--template", default=str(TEMPLATE), help="SAM template (default: template.yaml)")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", REGION), help="AWS region")
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a template parameter (repeatable)",
    )
    parser.add_argument(
        "--no-event-source-mappings",
        action="store_true",
        help="leave the Kinesis mappings out (automatic on moto); run `fraudwatch run` instead",
    )
    parser.add_argument(
        "--outputs-file",
        metavar="PATH",
        help="also write the endpoint and outputs here, for `fraudwatch produce/run --outputs PATH`",
    )
    parser.set_defaults(run=_deploy_command)
