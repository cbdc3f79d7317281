"""Fetch the Apache Kafka broker jars once with Maven, into a cache outside git."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .errors import JarsUnavailable

#: The pinned Apache Kafka version (Maven ``org.apache.kafka:kafka_2.13``).
KAFKA_VERSION = "4.1.1"
#: The logging backend added to the classpath (the Kafka jars bring only the SLF4J API).
SLF4J_VERSION = "2.0.17"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>offsetlab</groupId><artifactId>kafka-broker-jars</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""


def cache_dir() -> Path:
    """``$OFFSETLAB_CACHE``, else ``$XDG_CACHE_HOME/offsetlab``, else ``~/.cache/offsetlab``."""
    if os.environ.get("OFFSETLAB_CACHE"):
        return Path(os.environ["OFFSETLAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "offsetlab"


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    """Where the jars of ``version`` live (whether or not they are there yet)."""
    if os.environ.get("OFFSETLAB_KAFKA_LIBS"):
        return Path(os.environ["OFFSETLAB_KAFKA_LIBS"])
    return cache_dir() / f"kafka-{version}" / "libs"


def jars_present(version: str = KAFKA_VERSION) -> bool:
    libs = kafka_libs(version)
    if os.environ.get("OFFSETLAB_KAFKA_LIBS"):
        return (libs / f"kafka_2.13-{version}.jar").exists()
    return (libs / ".complete").exists()


def ensure_kafka_jars(version: str = KAFKA_VERSION, *, mvn: str | None = None) -> Path:
    """Return the folder of jars, fetching them with Maven the first time (~10 s, ~45 MB)."""
    libs = kafka_libs(version)
    if jars_present(version):
        return libs
    mvn = mvn or shutil.which("mvn")
    if not mvn:
        raise JarsUnavailable(
            f"the Kafka {version} jars are not in {libs} and Maven (`mvn`) is not on PATH to fetch "
            "them; install Maven (apt-get install maven, or conda install maven) or point "
            "OFFSETLAB_KAFKA_LIBS at a folder holding kafka_2.13 and its dependencies"
        )
    with tempfile.TemporaryDirectory(prefix="offsetlab-mvn-") as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(POM.format(kafka=version, slf4j=SLF4J_VERSION))
        staging = libs.with_name("libs.partial")
        shutil.rmtree(staging, ignore_errors=True)
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
             f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
            capture_output=True, text=True, timeout=900,
        )
        if proc.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").exists():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise JarsUnavailable(
                f"Maven could not fetch org.apache.kafka:kafka_2.13:{version} (exit {proc.returncode}); "
                f"check network access to the Maven repository or set OFFSETLAB_KAFKA_LIBS.\n{tail}"
            )
        (staging / ".complete").write_text(version + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
    return libs
