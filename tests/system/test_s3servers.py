"""Smoke tests of the S3 test servers in s3servers.py (s3rver and Swift+s3api):
boto3 and `curl --aws-sigv4` (as the C client signs with libcurl's
CURLOPT_AWS_SIGV4) against both, and the quirks the C client has to live with."""

import hashlib
import http.client
import subprocess
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from s3servers import SERVERS

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture(scope="module", params=sorted(SERVERS))
def store(request, tmp_path_factory):
    """One running server of each kind, shared by this module's tests (each test
    uses its own key prefix)."""
    s = SERVERS[request.param](tmp_path_factory.mktemp(request.param))
    s.start()
    yield s
    s.stop()


@pytest.fixture
def prefix():
    return f"t-{uuid.uuid4().hex[:12]}/"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def aws_query(params):
    """A query string in SigV4 canonical form: sorted by name, names and values
    percent-encoded with only A-Za-z0-9-_.~ left as is, '=' even for an empty
    value. libcurl 7.88 signs the query as it is in the URL, so it must already
    be in this form."""
    q = lambda s: urllib.parse.quote(s, safe="-_.~")
    return "&".join(f"{q(k)}={q(v)}" for k, v in sorted(params.items()))


def curl_s3(server, method, path, body=None, sha=None, secret=None, access_key=None,
            extra=(), tmp=None, timeout=20):
    """method on server.endpoint + path with `curl --aws-sigv4`; returns
    (status, {lower-case header: value}, body bytes)."""
    access_key = access_key or server.access_key
    secret = secret or server.secret_key
    url = server.endpoint + path
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", str(timeout),
            "--aws-sigv4", f"aws:amz:{server.region}:s3", "-X", method]
    if ":" in access_key:
        # Swift's tempauth key "account:user": --user would split it at its colon.
        url = url.replace("http://", "http://%s:%s@" % (
            urllib.parse.quote(access_key, safe=""), urllib.parse.quote(secret, safe="")), 1)
    else:
        argv += ["--user", f"{access_key}:{secret}"]
    if body is not None:
        src = tmp / f"body-{uuid.uuid4().hex}"
        src.write_bytes(body)
        argv += ["-T", str(src)]
    if sha is not None:
        argv += ["-H", f"x-amz-content-sha256: {sha}"]
    hdr, out = tmp / f"hdr-{uuid.uuid4().hex}", tmp / f"out-{uuid.uuid4().hex}"
    if method == "HEAD":
        argv += ["-I"]  # curl -I writes the headers where the body would go
        out = tmp / f"head-{uuid.uuid4().hex}"
    argv += ["-D", str(hdr), "-o", str(out), "-w", "%{http_code}", *extra, url]
    r = subprocess.run(argv, capture_output=True, timeout=timeout + 10)
    assert r.returncode == 0, f"curl failed: {r.stderr.decode(errors='replace')}"
    headers = {}
    for line in hdr.read_text(errors="replace").splitlines():
        if line.startswith("HTTP/"):
            headers = {}  # a 100 Continue comes first
        elif ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = out.read_bytes() if out.exists() and method != "HEAD" else b""
    return int(r.stdout), headers, body


def xml_doc(body):
    """The root of an S3 XML document with namespaces dropped (s3rver and Swift
    use different ones)."""
    root = ET.fromstring(body)
    for el in root.iter():
        el.tag = el.tag.split("}", 1)[-1]
    return root


def error_code(body):
    return xml_doc(body).findtext("Code")


# ---- boto3 ---------------------------------------------------------------------


def test_boto3_put_list_get_delete(store, prefix):
    c = store.boto3_client()
    keys = [f"{prefix}k{i}" for i in range(5)] + [f"{prefix}sub/k{i}" for i in range(2)]
    etags = {}
    for k in keys:
        body = f"value of {k}".encode()
        r = c.put_object(Bucket=store.bucket, Key=k, Body=body)
        assert r["ETag"] == '"%s"' % hashlib.md5(body).hexdigest()
        etags[k] = r["ETag"]
    c.put_object(Bucket=store.bucket, Key="other-" + prefix, Body=b"x")  # outside the prefix

    listed = c.list_objects_v2(Bucket=store.bucket, Prefix=prefix)
    assert [o["Key"] for o in listed["Contents"]] == sorted(keys)
    assert listed["KeyCount"] == len(keys) and not listed["IsTruncated"]
    for o in listed["Contents"]:
        assert o["ETag"] == etags[o["Key"]]
        assert o["Size"] == len(f"value of {o['Key']}")
        assert abs(o["LastModified"].timestamp() - time.time()) < 120

    # more keys than MaxKeys: pages of 2 with continuation tokens
    pages, token = [], None
    while True:
        kw = {"ContinuationToken": token} if token else {}
        r = c.list_objects_v2(Bucket=store.bucket, Prefix=prefix, MaxKeys=2, **kw)
        pages.append([o["Key"] for o in r.get("Contents", [])])
        assert r["MaxKeys"] == 2
        if not r["IsTruncated"]:
            break
        token = r["NextContinuationToken"]
        assert len(pages) < 10
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert sum(pages, []) == sorted(keys)

    # the paginator does the same
    got = [o["Key"] for page in c.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=prefix, PaginationConfig={"PageSize": 2})
        for o in page.get("Contents", [])]
    assert got == sorted(keys)

    for k in keys:
        r = c.get_object(Bucket=store.bucket, Key=k)
        assert r["Body"].read() == f"value of {k}".encode()
        assert r["ETag"] == etags[k]
    h = c.head_object(Bucket=store.bucket, Key=keys[0])
    assert h["ContentLength"] == len(f"value of {keys[0]}") and h["ETag"] == etags[keys[0]]

    for k in keys[:3]:
        c.delete_object(Bucket=store.bucket, Key=k)
    left = c.list_objects_v2(Bucket=store.bucket, Prefix=prefix)
    assert [o["Key"] for o in left["Contents"]] == sorted(keys[3:])
    with pytest.raises(ClientError) as e:
        c.get_object(Bucket=store.bucket, Key=keys[0])
    assert e.value.response["Error"]["Code"] == "NoSuchKey"
    c.delete_object(Bucket=store.bucket, Key=keys[0])  # deleting a missing key is fine (204)


def test_boto3_list_with_delimiter(store, prefix):
    c = store.boto3_client()
    for k in ("a/1", "a/2", "b/1", "top"):
        c.put_object(Bucket=store.bucket, Key=prefix + k, Body=b"v")
    r = c.list_objects_v2(Bucket=store.bucket, Prefix=prefix, Delimiter="/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == [prefix + "a/", prefix + "b/"]
    assert [o["Key"] for o in r["Contents"]] == [prefix + "top"]


# ---- curl --aws-sigv4 ------------------------------------------------------------


def test_curl_sigv4_put_get(store, prefix, tmp_path):
    body = bytes(range(256)) * 40 + b"end"
    key = f"/{store.bucket}/{prefix}blob%20one.bin"  # a space in the key, percent-encoded
    st, h, out = curl_s3(store, "PUT", key, body=body, sha=sha256(body), tmp=tmp_path)
    assert st == 200, out
    assert h["etag"] == '"%s"' % hashlib.md5(body).hexdigest()

    st, h, out = curl_s3(store, "GET", key, sha=EMPTY_SHA256, tmp=tmp_path)
    assert st == 200, out
    assert out == body
    assert int(h["content-length"]) == len(body)
    assert h["etag"] == '"%s"' % hashlib.md5(body).hexdigest()
    assert "last-modified" in h

    st, h, out = curl_s3(store, "HEAD", key, sha=EMPTY_SHA256, tmp=tmp_path)
    assert st == 200 and int(h["content-length"]) == len(body)
    assert h["etag"] == '"%s"' % hashlib.md5(body).hexdigest()

    # the same object seen through boto3
    c = store.boto3_client()
    assert c.get_object(Bucket=store.bucket, Key=prefix + "blob one.bin")["Body"].read() == body

    st, h, out = curl_s3(store, "DELETE", key, sha=EMPTY_SHA256, tmp=tmp_path)
    assert st == 204
    st, h, out = curl_s3(store, "GET", key, sha=EMPTY_SHA256, tmp=tmp_path)
    assert st == 404 and error_code(out) == "NoSuchKey"
    st, h, out = curl_s3(store, "HEAD", key, sha=EMPTY_SHA256, tmp=tmp_path)
    assert st == 404
    st, h, out = curl_s3(store, "DELETE", key, sha=EMPTY_SHA256, tmp=tmp_path)
    assert st == 204  # S3: deleting a missing key succeeds


def test_curl_sigv4_list_prefix_and_continuation(store, prefix, tmp_path):
    """A signed query string (prefix with '/', continuation-token with base64
    characters) works when sorted and percent-encoded; pages of max-keys=2."""
    c = store.boto3_client()
    keys = sorted(f"{prefix}o/{i:02d}" for i in range(5))
    for k in keys:
        c.put_object(Bucket=store.bucket, Key=k, Body=b"x" * 3)

    seen, token, pages = [], None, 0
    while True:
        params = {"list-type": "2", "max-keys": "2", "prefix": prefix + "o/"}
        if token:
            params["continuation-token"] = token
        st, h, out = curl_s3(store, "GET", f"/{store.bucket}?{aws_query(params)}",
                             sha=EMPTY_SHA256, tmp=tmp_path)
        assert st == 200, out
        doc = xml_doc(out)
        assert doc.tag == "ListBucketResult"
        assert doc.findtext("Prefix") == prefix + "o/"
        assert doc.findtext("MaxKeys") == "2"
        for o in doc.findall("Contents"):
            seen.append(o.findtext("Key"))
            assert o.findtext("Size") == "3"
            assert o.findtext("ETag") == '"%s"' % hashlib.md5(b"xxx").hexdigest()
            assert o.findtext("LastModified").endswith("Z")  # 2026-01-02T03:04:05.000Z
        pages += 1
        if doc.findtext("IsTruncated") != "true":
            break
        token = doc.findtext("NextContinuationToken")
        assert token and pages < 10
    assert seen == keys and pages == 3

    # delimiter through curl: CommonPrefixes
    params = {"delimiter": "/", "list-type": "2", "prefix": prefix}
    st, h, out = curl_s3(store, "GET", f"/{store.bucket}?{aws_query(params)}",
                         sha=EMPTY_SHA256, tmp=tmp_path)
    assert st == 200, out
    assert [p.findtext("Prefix") for p in xml_doc(out).findall("CommonPrefixes")] == [prefix + "o/"]


def test_wrong_credentials(store, prefix, tmp_path):
    body = b"secret stuff"
    key = f"/{store.bucket}/{prefix}creds"
    st, h, out = curl_s3(store, "PUT", key, body=body, sha=sha256(body), tmp=tmp_path)
    assert st == 200

    st, h, out = curl_s3(store, "GET", key, sha=EMPTY_SHA256, secret="wrong-secret", tmp=tmp_path)
    if store.kind == "swift":
        assert st == 403 and error_code(out) == "SignatureDoesNotMatch"
        st, h, out = curl_s3(store, "PUT", key, body=b"x", sha=sha256(b"x"),
                             secret="wrong-secret", tmp=tmp_path)
        assert st == 403 and error_code(out) == "SignatureDoesNotMatch"
        bad = store.boto3_client(secret_key="wrong-secret")
        with pytest.raises(ClientError) as e:
            bad.get_object(Bucket=store.bucket, Key=prefix + "creds")
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    else:
        assert st == 200 and out == body  # s3rver does not verify SigV4 signatures

    st, h, out = curl_s3(store, "GET", key, sha=EMPTY_SHA256, access_key="nobody",
                         secret="wrong-secret", tmp=tmp_path)
    assert st == 403
    assert error_code(out) == ("SignatureDoesNotMatch" if store.kind == "swift"
                               else "InvalidAccessKeyId")
    # the object is unchanged
    st, h, out = curl_s3(store, "GET", key, sha=EMPTY_SHA256, tmp=tmp_path)
    assert st == 200 and out == body


def test_payload_hash_header(store, prefix, tmp_path):
    """Both need x-amz-content-sha256 and take UNSIGNED-PAYLOAD; Swift checks the
    hash against the body, s3rver does not."""
    body = b"payload"
    key = f"/{store.bucket}/{prefix}payload"
    st, h, out = curl_s3(store, "PUT", key, body=body, tmp=tmp_path)
    assert st == 400 and error_code(out) == "InvalidRequest"  # the header is missing

    st, h, out = curl_s3(store, "PUT", key, body=body, sha="UNSIGNED-PAYLOAD", tmp=tmp_path)
    assert st == 200

    st, h, out = curl_s3(store, "PUT", key + "-bad", body=body, sha=sha256(b"other"), tmp=tmp_path)
    if store.kind == "swift":
        assert st == 400 and error_code(out) == "BadDigest"
    else:
        assert st == 200

    st, h, out = curl_s3(store, "GET", key, sha="UNSIGNED-PAYLOAD", tmp=tmp_path)
    assert st == 200 and out == body


# ---- lifecycle ---------------------------------------------------------------------


def test_pause_resume(store, prefix):
    c = store.boto3_client()
    c.put_object(Bucket=store.bucket, Key=prefix + "p", Body=b"before")
    store.pause()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", store.port, timeout=1)
        with pytest.raises(OSError):  # a timeout: the kernel accepts, nobody answers
            conn.request("GET", "/")
            conn.getresponse()
        conn.close()
    finally:
        store.resume()
    assert c.get_object(Bucket=store.bucket, Key=prefix + "p")["Body"].read() == b"before"


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_restart_same_port_and_state(kind, tmp_path, record_property):
    s = SERVERS[kind](tmp_path / kind)
    try:
        s.start()
        first = s.start_seconds
        port, endpoint = s.port, s.endpoint
        pids = s.pids()
        assert pids
        c = s.boto3_client()
        c.put_object(Bucket=s.bucket, Key="kept", Body=b"across restarts")
        s.stop()
        assert not s.running and not s.pids()
        for pid in pids:
            assert not _alive(pid), f"{kind}: process {pid} left behind"
        with pytest.raises(OSError):
            http.client.HTTPConnection("127.0.0.1", port, timeout=2).request("GET", "/")

        s.start()
        assert s.port == port and s.endpoint == endpoint
        assert c.get_object(Bucket=s.bucket, Key="kept")["Body"].read() == b"across restarts"
        record_property("start_seconds", f"{first:.2f} then {s.start_seconds:.2f}")
        print(f"{kind}: started in {first:.2f} s, restarted in {s.start_seconds:.2f} s")
    finally:
        pids = s.pids()
        s.stop()
    for pid in pids:
        assert not _alive(pid), f"{kind}: process {pid} left behind"


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"
