"""`make install` and the README's class example, built out of tree with the
one-line command the README gives, then served by the installed binary."""

import os
import re
import subprocess

from dobjtest import BUILD, REPO, Server


def readme_example():
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- visits\.c begin -->\s*```c\n(.*?)```\s*<!-- visits\.c end -->", text, re.S)
    assert m, "README.md lost its visits.c example block"
    return m.group(1)


def test_readme_class_builds_out_of_tree_and_serves(tmp_path):
    prefix = tmp_path / "prefix"
    make = ["make", "--no-print-directory", "-C", str(REPO), "install", f"PREFIX={prefix}",
            f"BUILD={BUILD.name}"]
    if BUILD.name == "build-asan":
        make.append("SANITIZE=1")
    subprocess.run(make, check=True, capture_output=True, timeout=300)
    assert (prefix / "bin" / "dobj").is_file()
    assert (prefix / "include" / "dobj.h").read_bytes() == (REPO / "sdk/include/dobj.h").read_bytes()

    src = tmp_path / "visits.c"
    src.write_text(readme_example())
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    # The README's command, word for word, in a shell.
    subprocess.run("cc -shared -fPIC $(pkg-config --cflags dobj) visits.c -o visits.so", shell=True,
                   cwd=tmp_path, env=env, check=True, timeout=120)

    s = Server(tmp_path / "srv", classes=[tmp_path / "visits.so"], binary=prefix / "bin" / "dobj").start()
    try:
        r1 = s.get("/visits/home")
        r2 = s.post("/visits/home")
        r3 = s.get("/visits/other")
        assert r1.status_code == 200, r1.text
        assert r1.json() == {"name": "home", "visits": 1}
        assert r2.json() == {"name": "home", "visits": 2}
        assert r3.json() == {"name": "other", "visits": 1}
        assert s.request("DELETE", "/visits/home").status_code == 405
    finally:
        rc, killed = s.stop()
    assert not killed and rc == 0, s.log_tail()
