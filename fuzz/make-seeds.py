#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into fuzz/seeds/<target>/ from the project's own
examples, test manifests and history samples, plus small hand-written answers of the servers
the clients talk to. Run from the repository root: python3 fuzz/make-seeds.py (needs PyYAML)."""
import glob
import json
import os
import shutil

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def put(target, name, data):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


shutil.rmtree(SEEDS, ignore_errors=True)

# Manifests: the fuzz test reads examples/ and tests/valid/ as seeds of `manifest`
# directly; their Chaos and ChaosSchedule documents are seeds of `api_object` below.
manifests = sorted(
    glob.glob(os.path.join(ROOT, "examples", "**", "*.yaml"), recursive=True)
    + glob.glob(os.path.join(ROOT, "tests", "valid", "*.yaml"))
    + glob.glob(os.path.join(ROOT, "tests", "invalid", "*.yaml"))
)

# Histories: the first byte picks the format (0 auto, 1 native, 2 Jepsen log, 3 EDN).
NATIVE = """{"version":1,"model":"cas-register"}
{"process":3,"type":"ok","f":"cas","key":"k1","value":[1,2],"swapped":true,"invoke":1200,"complete":3400}
{"process":1,"type":"ok","f":"write","key":"k1","value":1,"invoke":100,"complete":900}
{"process":2,"type":"info","f":"read","key":"k1","value":null,"invoke":1000,"complete":null}
{"process":0,"type":"ok","f":"read","key":"k1","value":2,"invoke":3500,"complete":3600}
"""
EVENTS = """{"version":1,"model":"kv"}
{"process":0,"type":"invoke","f":"put","key":"a","value":"x","time":1}
{"process":1,"type":"invoke","f":"get","key":"a","value":null,"time":2}
{"process":0,"type":"ok","f":"put","key":"a","value":"x","time":3}
{"process":1,"type":"ok","f":"get","key":"a","value":"x","time":4}
{"process":1,"type":"invoke","f":"append","key":"a","value":"y","time":5}
{"process":1,"type":"info","f":"append","key":"a","value":"y","time":6}
"""
put("history", "native-completed", b"\x01" + NATIVE.encode())
put("history", "native-events", b"\x00" + EVENTS.encode())
for name in ["etcd_002.log", "etcd_067.log"]:
    text = read(os.path.join("tests", "data", "porcupine", "jepsen", name))
    put("history", "jepsen-" + name, b"\x02" + text[:4000])
for name in ["c01-ok.txt", "c01-bad.txt"]:
    text = read(os.path.join("tests", "data", "porcupine", "kv", name))
    put("history", "kv-" + name, b"\x03" + text[:4000])

# Transactional histories, native and EDN.
put("txn_history", "list-append", """{"version":1,"model":"list-append"}
{"process":0,"type":"ok","f":"txn","value":[["append","x",1],["r","y",[3,4]]],"invoke":1000,"complete":2000}
{"process":1,"type":"fail","f":"txn","value":[["append","y",5]],"invoke":1500,"complete":1900}
{"process":2,"type":"info","f":"txn","value":[["r","x",null],["append","x",2]],"invoke":2100,"complete":null}
{"process":3,"type":"ok","f":"txn","value":[["append","y",3],["append","y",4]],"invoke":10,"complete":20}
""")
put("txn_history", "rw-register", """{"version":1,"model":"rw-register"}
{"process":0,"type":"ok","f":"txn","value":[["w",1,1],["r",2,null]],"invoke":1,"complete":5}
{"process":1,"type":"ok","f":"txn","value":[["w",2,1],["r",1,null]],"invoke":2,"complete":6}
{"process":2,"type":"ok","f":"txn","value":[["r",1,1],["r",2,1]],"invoke":7,"complete":9}
""")
put("txn_history", "events", """{"process":0,"type":"invoke","f":"txn","value":[["append",1,1],["r",1,null]],"time":1}
{"process":1,"type":"invoke","f":"txn","value":[["r",1,null]],"time":2}
{"process":0,"type":"ok","f":"txn","value":[["append",1,1],["r",1,[1]]],"time":3}
{"process":1,"type":"ok","f":"txn","value":[["r",1,[1]]],"time":4}
""")
put("txn_history", "edn", """{:type :invoke, :f :txn, :value [[:append 1 1] [:r 2 nil]], :process 0, :time 10, :index 0}
{:type :invoke, :f :txn, :value [[:append 2 1] [:r 1 nil]], :process 1, :time 11, :index 1}
{:type :ok, :f :txn, :value [[:append 1 1] [:r 2 []]], :process 0, :time 20, :index 2}
{:type :ok, :f :txn, :value [[:append 2 1] [:r 1 []]], :process 1, :time 21, :index 3}
{:type :invoke, :f :txn, :value [[:r 1 nil] [:r 2 nil]], :process 0, :time 30, :index 4}
{:type :ok, :f :txn, :value [[:r 1 [1]] [:r 2 [1]]], :process 0, :time 40, :index 5}
""")

# What the agent reads of /proc: cgroup files in both drivers and both versions, stat lines.
UID = "6f1c0d1e-8a55-4c55-9a0e-4d7f3f0b8a11"
put("proc_cgroup", "v2-cgroupfs", f"0::/kubepods/besteffort/pod{UID}/0123456789abcdef\n")
put("proc_cgroup", "v2-systemd",
    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
    + UID.replace("-", "_") + ".slice/cri-containerd-0123.scope\n")
put("proc_cgroup", "v2-relative", f"0::/../../kubepods-pod{UID.replace('-', '_')}.slice/cri-0.scope\n")
put("proc_cgroup", "v1", f"12:memory:/kubepods/pod{UID}/abc\n11:freezer:/kubepods/pod{UID}/abc\n1:name=systemd:/x\n")
put("proc_cgroup", "host", "0::/system.slice/containerd.service\n")
put("proc_cgroup", "stat", "42 (odd) name) T 1 42 42 0 -1 4194560 100 0 0 0\n")

# Redis replies and INFO replication.
put("redis_reply", "kinds", b"+OK\r\n-ERR no\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$0\r\n\r\n*-1\r\n")
put("redis_reply", "nested", b"*2\r\n*2\r\n$1\r\na\r\n:7\r\n*1\r\n+QUEUED\r\n")
put("redis_reply", "info", b"$60\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\nmaster_repl_offset:7\r\n\r\n")

# JSON answers of etcd's gateway and of Prometheus.
answers = {
    "etcd-range": {"header": {"revision": "7"}, "kvs": [{"key": "MA==", "value": "MTI=", "mod_revision": "7"}], "count": "1"},
    "etcd-range-empty": {"header": {"revision": "7"}},
    "etcd-txn": {"header": {"revision": "8"}, "succeeded": True, "responses": [{"response_put": {}}]},
    "etcd-snapshot": {"succeeded": True, "responses": [
        {"response_range": {"kvs": [{"key": "MA==", "value": "WzEsMiwzXQ==", "mod_revision": "5"}]}},
        {"response_range": {}},
        {"response_range": {"kvs": [{"key": "Mg==", "value": "WzRd", "mod_revision": "6"}]}}]},
    "etcd-status": {"header": {"member_id": "42", "raft_term": "3"}, "leader": "42", "raftTerm": "3"},
    "prometheus-vector": {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"job": "a"}, "value": [1700000000.1, "0.5"]}, {"metric": {}, "value": [1, "NaN"]}]}},
    "prometheus-scalar": {"status": "success", "data": {"resultType": "scalar", "result": [1, "+Inf"]}},
    "prometheus-error": {"status": "error", "errorType": "bad_data", "error": "parse error"},
}
for name, answer in answers.items():
    put("json_answer", name, json.dumps(answer))

# API objects: the first byte picks the kind (0 Chaos, 1 FaultLease, 2 ChaosSchedule, 3 Pods,
# 4 Job/Deployment/StatefulSet).
for path in manifests:
    if "invalid" in path:
        continue
    with open(path) as f:
        for i, doc in enumerate(yaml.safe_load_all(f)):
            if not isinstance(doc, dict):
                continue
            kind = {"Chaos": 0, "ChaosSchedule": 2}.get(doc.get("kind"))
            if kind is not None:
                name = os.path.relpath(path, ROOT).replace("/", "_") + f"-{i}.json"
                put("api_object", name, bytes([kind]) + json.dumps(doc).encode())
lease = {
    "apiVersion": "schism.dev/v1alpha1", "kind": "FaultLease",
    "metadata": {"name": "run-a-f0-etcd-0", "namespace": "default", "finalizers": ["schism.dev/agent"]},
    "spec": {"chaos": "etcd-partition", "faultId": "f0",
             "pod": {"name": "etcd-0", "uid": UID, "nodeName": "node-a", "ip": "10.0.0.2"},
             "deadline": "2026-06-01T12:01:00Z",
             "fault": {"partition": {"dropPeers": ["10.0.0.3", "10.0.0.4"]}}},
    "status": {"phase": "Applied"},
}
put("api_object", "lease-partition.json", b"\x01" + json.dumps(lease).encode())
for fault in [{"latency": {"delay": "100ms", "jitter": "10ms", "fromPeers": ["10.0.0.3"]}},
              {"loss": {"percent": 20}}, {"bandwidth": {"rate": "1mbit"}}, {"pause": {}}]:
    lease["spec"]["fault"] = fault
    put("api_object", f"lease-{next(iter(fault))}.json", b"\x01" + json.dumps(lease).encode())
pods = [{"metadata": {"name": "etcd-0", "uid": UID, "labels": {"app": "etcd"}},
         "spec": {"nodeName": "node-a", "containers": [{"name": "etcd", "image": "etcd"}]},
         "status": {"podIP": "10.0.0.2", "conditions": [{"type": "Ready", "status": "True"}]}}]
put("api_object", "pods.json", b"\x03" + json.dumps(pods).encode())
job = {"metadata": {"name": "run"}, "spec": {"template": {"spec": {"containers": [{"name": "r", "image": "x"}]}}},
       "status": {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}}
put("api_object", "job.json", b"\x04" + json.dumps(job).encode())
