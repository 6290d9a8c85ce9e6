#!/bin/sh
# Copies uPlot from node_modules (npm install, pinned by package-lock.json)
# into static/vendor, which is committed so that cargo builds need no npm.
set -e
cd "$(dirname "$0")"
mkdir -p static/vendor
cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css static/vendor/
cp node_modules/uplot/LICENSE static/vendor/uPlot.LICENSE
