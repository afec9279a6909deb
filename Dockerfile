FROM python:3.11-slim
WORKDIR /app
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs npm \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN pip install --no-cache-dir -e '.[prod]' && npm ci --omit=dev
ENV FLASK_APP=webapp
EXPOSE 8000
CMD ["sh", "-c", "flask db upgrade && gunicorn -w 2 -b 0.0.0.0:8000 'webapp:create_app()'"]
