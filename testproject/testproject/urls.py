from django.contrib import admin
from django.urls import include, path

from django_quickworker import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics/", metrics.view),
    path("", include("demo.urls")),
]
