#!/usr/bin/env python3
"""Classifies the Go SDK's Databricks routes by what their request and response models carry.

Reads the route list (tests/data/databricks-rest-routes-from-sdk-go.tsv: scope, method, path,
sdk_package, sdk_service, sdk_method) and the SDK's `service/<pkg>/impl.go` and `model.go` at the commit the TSV names,
from a git directory of databricks/databricks-sdk-go (the `fetch` tool's bare clone works):

    python3 tools/databricks/classify_routes.py ROUTES.tsv SDK_GIT_DIR > \
        core/src/databricks/catalogue/credential_operations.tsv

An operation is a *credential operation* when its response model, or a struct nested in it
(transitively, across SDK packages), has a field whose JSON name says it carries a token,
secret, password, key, credential, pre-signed URL or activation link (CREDENTIAL_WORDS), and is
not one of the names that only look like one (NOT_CREDENTIALS: pagination tokens, identifiers,
times, enums, key/value map keys...). Every such operation must have a reviewed decision in
DECISIONS: the route class that refuses it by default, or `allow` with the reason. An
operation found without a decision, or a decision that matches no operation, fails the run, so
a new SDK version forces a review instead of slipping through. `--raw` prints the hits
without decisions (for reviewing a new SDK version).

The request model is walked the same way: an operation whose request carries a credential and
whose response carries none is listed as `request` (it stores a credential; it returns none).
"""

import re
import subprocess
import sys

# JSON names (lower-cased, camelCase split to snake_case) that may carry a credential.
CREDENTIAL_WORDS = re.compile(
    r"(^|_)(token|tokens|secret|secrets|password|key|keys|credential|credentials|"
    r"presigned|signed_url|upload_url|download_url|download_link|activation_url|"
    r"activation_link|bearer)(_|$)"
)
# A `value` is the credential itself in a struct named for one (`GetSecretResponse.value`,
# `Secret.effective_value`).
CREDENTIAL_STRUCT = re.compile(r"Secret|Token|Credential|Password")
VALUE_FIELD = re.compile(r"^(value|effective_value|string_value|bytes_value)$")
# The SDK marks fields the API never returns: `[Input-Only]` in the field's comment.
INPUT_ONLY = "[Input-Only]"
# Names that contain such a word but never a credential: pagination and idempotency tokens,
# identifiers and metadata about a credential, references to a secret stored elsewhere
# (`*_ref`), public keys, KMS key identifiers, and `key`s that name an entry (tags, tasks,
# environments, map keys: key material is always qualified, `private_key`, `api_key`).
NOT_CREDENTIALS = re.compile(
    r"^(key|keys)$"
    r"|(^|_)(page_token|next_page_token|prev_page_token|previous_page_token|next_token|"
    r"continuation_token|idempotency_token|consistency_token)$"
    r"|_(id|ids|name|names|type|types|time|timestamp|ms|at|count|version|arn|alias|"
    r"expiration|expiry|ttl|lifetime|seconds|timeout|status|state|scope|scopes|hash|"
    r"fingerprint|ref|refs|set|uri|region|provider|source|mode|column|columns|field|fields)$"
    r"|^(has|is|use|enable|enabled|require)_"
    r"|(^|_)(resource|task|job_cluster|environment|tag|property|claim|kms|public|"
    r"primary|partition|sort|join|lookup|timeseries|foreign|clustering)_keys?$"
    r"|^key_(schema|transformer|schema_locator)$"
)
SCALARS = {"string", "bool", "int", "int64", "int32", "float64", "float32", "any", "byte"}
SECRET_SCALARS = {"string", "any", "byte"}

# Reviewed decisions, first match wins: (method regex, path regex, class or "allow", reason).
# A class is one of brickgate's RouteClass names (core/src/databricks/catalogue/classes.rs).
# Paths are the TSV's canonical spelling, `{}` for a path parameter.
DECISIONS = [
    ("POST", r"/api/2\.0/token/create", "personal_access_tokens",
     "mints a personal access token"),
    ("POST", r"/api/2\.0/token-management/on-behalf-of/tokens", "personal_access_tokens",
     "mints a token on behalf of a service principal"),
    ("POST", r"/api/2\.0/accounts/(\{\}/)?servicePrincipals/\{\}/credentials/secrets",
     "oauth_secrets_and_federation", "creates a service principal OAuth secret"),
    ("POST", r"/api/2\.0/accounts/\{\}/oauth2/custom-app-integrations",
     "oauth_secrets_and_federation", "creates an OAuth app and returns its client secret"),
    ("POST", r"/api/2\.0/credentials-manager/exchange-tokens/token",
     "oauth_secrets_and_federation", "exchanges for IdP tokens"),
    ("POST", r"/api/2\.0/(database|postgres)/credentials", "database_credentials",
     "mints a database login token"),
    ("GET", r"/api/2\.0/secrets/get", "secret_values", "returns a secret's value"),
    ("GET", r"/api/2\.1/unity-catalog/secrets/\{\}", "secret_values",
     "returns a secret's value (with include_value)"),
    ("GET|POST|PATCH", r"/api/2\.1/unity-catalog/secrets(/\{\})?", "allow",
     "effective_value is only populated with include_value, which only Get's request "
     "model has (catalog GetSecretRequest)"),
    ("POST", r"/api/2\.[01]/unity-catalog/temporary-(table|volume|path|service)-credentials",
     "cloud_credentials", "vends temporary cloud storage credentials"),
    (".*", r"/api/2\.1/unity-catalog/(recipients(/.*)?|public/data_sharing_activation/\{\})",
     "sharing_tokens", "returns a Delta Sharing recipient's activation link or bearer token"),
    (".*", r"/api/2\.1/marketplace-consumer/(listings/\{\}/)?installations(/\{\})?",
     "marketplace_installations",
     "returns the installation's Delta Sharing bearer token and activation link"),
    ("POST", r"/api/2\.0/marketplace-provider/files", "presigned_urls",
     "returns a pre-signed upload URL to cloud storage"),
    ("GET|PUT", r"/api/2\.[01]/marketplace-(provider|consumer)/.*", "allow",
     "download_link of a listing's own files, published for its consumers to read"),
    (".*", r"/api/2\.[01]/(accounts/\{\}/metastores/\{\}/)?(unity-catalog/)?"
     r"(storage-)?credentials(/\{\})?", "allow",
     "the stored credential's configuration, in a model shared with its create request; "
     "mints nothing for the caller"),
    (".*", r"/api/2\.0/serving-endpoints.*", "allow",
     "external model keys: `*_api_key` fields are secret references (`{{secrets/...}}`, SDK "
     "comment), `*_plaintext` the caller's own input"),
    (".*", r"/api/2\.[012]/(clusters|jobs|instance-pools|policies)/.*", "allow",
     "docker_image.basic_auth.password of a cluster spec: the registry password the caller "
     "configured, not a Databricks credential"),
    (".*", r"/api/2\.1/unity-catalog/providers(/\{\})?", "allow",
     "recipient_profile: the sharing profile the caller stored when creating the provider"),
]


def snake(name):
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def git_show(git_dir, commit, path):
    result = subprocess.run(
        ["git", "--git-dir", git_dir, "show", f"{commit}:{path}"],
        capture_output=True,
        text=True,
    )
    return result.stdout if result.returncode == 0 else ""


class Models:
    """The structs and string enums of every SDK package, loaded on demand."""

    def __init__(self, git_dir, commit):
        self.git_dir, self.commit = git_dir, commit
        self.structs = {}  # (pkg, Type) -> [(json_name, go_type)]
        self.enums = set()  # (pkg, Type)
        self.aliases = {}  # (pkg, Type) -> go_type
        self.loaded = set()

    def load(self, pkg):
        if pkg in self.loaded:
            return
        self.loaded.add(pkg)
        text = git_show(self.git_dir, self.commit, f"service/{pkg}/model.go")
        current = None
        comment = ""
        for line in text.splitlines():
            if line.startswith("\t//"):
                comment += line
                continue
            start = re.match(r"^type (\w+) struct \{", line)
            if start:
                current = (pkg, start.group(1))
                self.structs[current] = []
                continue
            other = re.match(r"^type (\w+) (\S+)$", line)
            if other:
                key = (pkg, other.group(1))
                if other.group(2) == "string":
                    self.enums.add(key)
                else:
                    self.aliases[key] = other.group(2)
                continue
            if current and line.startswith("}"):
                current = None
                continue
            field = re.match(r'^\t(\w+) +(\S+) +`json:"([^,"]*)', line)
            input_only = INPUT_ONLY in comment
            comment = ""
            if current and field and field.group(3) not in ("", "-") and not input_only:
                self.structs[current].append((field.group(3), field.group(2)))

    def resolve(self, pkg, go_type):
        """(pkg, bare type name, is_scalar) of a Go field type."""
        bare = re.sub(r"^(\*|\[\]|map\[string\])+", "", go_type)
        if bare in SCALARS or bare.startswith(("map[", "json.", "time.", "[]")):
            return pkg, bare, True
        if "." in bare:
            pkg, bare = bare.split(".", 1)
        self.load(pkg)
        if (pkg, bare) in self.aliases:
            return self.resolve(pkg, self.aliases[(pkg, bare)])
        return pkg, bare, False

    def credential_fields(self, pkg, type_name, seen=None, prefix=""):
        """Dotted paths of the credential-looking fields in `type_name`, transitively."""
        seen = set() if seen is None else seen
        if (pkg, type_name) in seen:
            return []
        seen.add((pkg, type_name))
        self.load(pkg)
        found = []
        fields = self.structs.get((pkg, type_name), [])
        names = {snake(n) for n, _ in fields}
        for json_name, go_type in fields:
            name = snake(json_name)
            fpkg, bare, scalar = self.resolve(pkg, go_type)
            path = f"{prefix}{json_name}"
            is_map_key = name == "key" and "value" in names
            # Only values can be credentials; a struct is walked for its own fields.
            if scalar:
                named = CREDENTIAL_WORDS.search(name) and not NOT_CREDENTIALS.search(name)
                holds = VALUE_FIELD.match(name) and CREDENTIAL_STRUCT.search(type_name)
                if bare in SECRET_SCALARS and (named or holds) and not is_map_key:
                    found.append(path)
            elif (fpkg, bare) not in self.enums and not NOT_CREDENTIALS.search(name):
                found += self.credential_fields(fpkg, bare, seen, f"{path}.")
        return found


def impl_responses(git_dir, commit, pkg):
    """(service, method) -> (request type, response type) from the package's impl.go."""
    text = git_show(git_dir, commit, f"service/{pkg}/impl.go")
    out = {}
    for func in re.split(r"\n(?=func )", text):
        head = re.match(r"func \(a \*(\w+)Impl\) (\w+)\(ctx context\.Context(?:, request (\w+))?", func)
        if not head or "path :=" not in func:
            continue
        call = re.search(r"a\.client\.Do\([^)]*?, (?:&(\w+)|nil)\)", func)
        response = None
        if call and call.group(1):
            decl = re.search(rf"var {call.group(1)} (\S+)", func)
            response = decl.group(1) if decl else None
        out[(head.group(1), head.group(2))] = (head.group(3), response)
    return out


def decide(method, path):
    for methods, pattern, decision, reason in DECISIONS:
        if re.fullmatch(methods, method) and re.fullmatch(pattern, path):
            return decision, reason, (methods, pattern)
    return None


def write(routes_path, commit, hits, request_hits):
    used, missing = set(), []
    rows = []
    for scope, method, path, sdk, response, fields in hits:
        decision = decide(method, path)
        if decision is None:
            missing.append(f"{method} {path} ({sdk}: {', '.join(fields)})")
            continue
        used.add(decision[2])
        shown = ",".join(f"{response}.{f}" for f in fields[:3])
        shown += f",+{len(fields) - 3}" if len(fields) > 3 else ""
        rows.append((method, path, decision[0], shown, decision[1]))
    unused = [f"{m} {p}" for m, p, _, _ in DECISIONS if (m, p) not in used]
    if missing or unused:
        print("unreviewed credential operations:", *missing, sep="\n  ", file=sys.stderr)
        print("decisions matching nothing:", *unused, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print("# Generated by tools/databricks/classify_routes.py from", routes_path.split("/")[-1])
    print(f"# and databricks/databricks-sdk-go {commit} service/*/{{impl,model}}.go.")
    print("# Regenerate rather than edit; reviewed decisions live in the script's DECISIONS.")
    print("# Operations whose response carries a credential, and the route class that refuses")
    print("# them by default or `allow` with the reviewed reason. Then operations whose request")
    print("# carries one (`request`): they store a credential the caller supplies.")
    print("# Columns: method\tpath\tclass|allow|request\tfields\treason")
    for row in sorted(rows, key=lambda r: (r[1], r[0])):
        print(*row, sep="\t")
    for method, path, request, fields in sorted(request_hits, key=lambda r: (r[1], r[0])):
        if any(r[0] == method and r[1] == path for r in rows):
            continue
        shown = ",".join(f"{request}.{f}" for f in fields[:3])
        shown += f",+{len(fields) - 3}" if len(fields) > 3 else ""
        print(method, path, "request", shown, "stores a credential the caller supplies; "
              "its response carries none", sep="\t")


def main():
    routes_path, git_dir = sys.argv[1], sys.argv[2]
    with open(routes_path) as f:
        lines = f.read().splitlines()
    commit = re.search(r"commit ([0-9a-f]{40})", lines[0]).group(1)
    models = Models(git_dir, commit)
    impls = {}
    hits = []
    request_hits = []
    routed = 0
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        scope, method, path, pkg, service, sdk_method = line.split("\t")
        if pkg not in impls:
            impls[pkg] = impl_responses(git_dir, commit, pkg)
        if (service, sdk_method) not in impls[pkg]:
            sys.exit(f"no SDK implementation found for {method} {path} ({pkg}.{service}.{sdk_method})")
        routed += 1
        request, response = impls[pkg][(service, sdk_method)]
        if response:
            fields = models.credential_fields(pkg, response)
            if fields:
                hits.append((scope, method, path, f"{pkg}.{service}.{sdk_method}", response, fields))
        if request:
            fields = models.credential_fields(pkg, request)
            if fields:
                request_hits.append((method, path, request, fields))
    print(f"{routed} routes, {len(hits)} whose response and {len(request_hits)} whose request "
          "carries a credential", file=sys.stderr)
    if "--raw" in sys.argv:
        for hit in hits:
            print(*hit[:5], ",".join(hit[5]), sep="\t")
        print("# requests")
        for hit in request_hits:
            print(*hit[:3], ",".join(hit[3]), sep="\t")
        return
    write(routes_path, commit, hits, request_hits)


if __name__ == "__main__":
    main()
