# All metadata lives in setup.cfg; this stub lets older pip/setuptools do editable installs.
from setuptools import setup

setup()
